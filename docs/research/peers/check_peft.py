import os, sys, time, tempfile
os.environ.setdefault("HF_HUB_OFFLINE", "1")
t = time.time()
import torch
from peft import LoraConfig, get_peft_model, PeftModel
import peft
print("peft", peft.__version__, "import s", round(time.time() - t, 2))
torch.manual_seed(0)
def base():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).double()
cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"], lora_dropout=0.0, init_lora_weights=False)
m = get_peft_model(base(), cfg)
m.print_trainable_parameters()
x = torch.randn(3, 8, dtype=torch.float64)
opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
loss = m(x).pow(2).sum(); loss.backward(); opt.step()
y1 = m(x).detach()
d = tempfile.mkdtemp()
m.save_pretrained(d)
print(sorted(os.listdir(d)))
m2 = PeftModel.from_pretrained(base(), d)
y2 = m2(x).detach()
print("roundtrip max abs diff", (y1 - y2).abs().max().item(), "dtype", y2.dtype)
assert torch.equal(y1, y2)
merged = m2.merge_and_unload()
print("merged diff", (merged(x) - y1).abs().max().item())
print("OK")
