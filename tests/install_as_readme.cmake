# The README's install commands, run literally on a fresh build tree:
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
#   cmake --build build
#   cmake --install build --prefix PREFIX
# then checks what landed. Usage: cmake -DSOURCE=... -DBUILD=... -DPREFIX=... -P install_as_readme.cmake
foreach(var SOURCE BUILD PREFIX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_as_readme.cmake: -D${var}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${BUILD} ${PREFIX})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " shown "${ARGN}")
    message(FATAL_ERROR "install_as_readme: '${shown}' failed (${rc})")
  endif()
endfunction()

# No -DPEFT_* options: a plain configure must not need GoogleTest, benchmark or zlib.
run(${CMAKE_COMMAND} -S ${SOURCE} -B ${BUILD} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${BUILD})
run(${CMAKE_COMMAND} --install ${BUILD} --prefix ${PREFIX})

foreach(file include/peft/peft.hpp include/peft/io/module_pattern.hpp bin/peft-inspect
        lib/cmake/peft/peftConfig.cmake lib/cmake/peft/peftConfigVersion.cmake lib/cmake/peft/peftTargets.cmake)
  if(NOT EXISTS ${PREFIX}/${file})
    message(FATAL_ERROR "install_as_readme: ${PREFIX}/${file} was not installed")
  endif()
endforeach()
run(${PREFIX}/bin/peft-inspect ${SOURCE}/tests/golden/peft/lora_f64)
