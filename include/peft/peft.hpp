#pragma once
// peft-cpp umbrella header: the core API, every adapter and the io layer.

#include <peft/core/activation.hpp>
#include <peft/core/adapted.hpp>
#include <peft/core/adapted_layer.hpp>
#include <peft/core/adapter.hpp>
#include <peft/core/adapter_combination.hpp>
#include <peft/core/bfloat16.hpp>
#include <peft/core/dropout.hpp>
#include <peft/core/error.hpp>
#include <peft/core/frozen_layer.hpp>
#include <peft/core/gemm_backend.hpp>
#include <peft/core/init.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/linear_bf16.hpp>
#include <peft/core/linear_int8.hpp>
#include <peft/core/multi_adapted.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/scratch.hpp>
#include <peft/core/types.hpp>

#include <peft/adapters/c3a.hpp>
#include <peft/adapters/dora.hpp>
#include <peft/adapters/full.hpp>
#include <peft/adapters/houlsby.hpp>
#include <peft/adapters/ia3.hpp>
#include <peft/adapters/lokr.hpp>
#include <peft/adapters/lora.hpp>
#include <peft/adapters/lorta.hpp>
#include <peft/adapters/melora.hpp>
#include <peft/adapters/red.hpp>
#include <peft/adapters/surm.hpp>
#include <peft/adapters/surm_adapter.hpp>

#include <peft/optim/adamw.hpp>
#include <peft/optim/optimizer_state.hpp>
#include <peft/optim/param_set.hpp>
#include <peft/optim/schedule.hpp>
#include <peft/optim/sgd.hpp>

#include <peft/io/peft_config.hpp>
#include <peft/io/gguf.hpp>
#include <peft/io/multi_adapter_dir.hpp>
#include <peft/io/peft_dir.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/io/training_state.hpp>

/// \namespace peft
/// Layers, adapters and their parameters: Linear, the adapters (LoRA, ...),
/// Adapted/AdaptedLayer, which wrap a frozen Linear in one, and peft::Error.
/// \namespace peft::init
/// Parameter initialisers with PyTorch's semantics.
/// \namespace peft::optim
/// Optimizers (SGD, AdamW) over a ParamSet, and learning-rate schedules.
/// \namespace peft::io
/// Hugging Face PEFT adapter directories, safetensors files and module patterns.
/// \namespace peft::fft
/// Batched real FFTs of blocks of rows, behind the structured adapters.
/// \namespace peft::structured
/// Circulant, Toeplitz, Kronecker and low-displacement-rank products with their
/// gradients, on which the structured adapters are built.
/// \namespace peft::testing
/// Finite-difference gradient checks (<peft/testing/gradcheck.hpp>, not included here).
