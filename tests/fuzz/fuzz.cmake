# fuzz.cmake: libFuzzer targets (tests/fuzz/fuzz_*.c), each with a seed corpus in
# tests/fuzz/corpus/<target>/.
#
# Default build (any compiler): every target links replay_main.c, which runs the target once
# over each file of its corpus; ctest runs that as fuzz.replay.<target> (label `fuzz`: fast,
# deterministic, part of CI).
# -DSBX_FUZZ=ON (clang only): real libFuzzer binaries with ASan + UBSan. The code under test
# (the libraries a target links) is compiled with -fsanitize=fuzzer-no-link so libFuzzer sees
# its coverage; only the fuzz targets link libFuzzer itself. The same ctest entries then run
# the corpus once (-runs=0). tests/fuzz/run_fuzzers.sh builds this in build-fuzz and fuzzes.
option(SBX_FUZZ "Build libFuzzer fuzz targets (needs clang; adds ASan/UBSan)" OFF)

set(SBX_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
# (clang 14 does not know the tree's -Wno-format-truncation: -Werror would reject it)
set(SBX_FUZZ_SAN -fsanitize=address,undefined -fno-sanitize-recover=undefined
                 -fno-omit-frame-pointer -Wno-unknown-warning-option)

if(SBX_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "SBX_FUZZ=ON needs clang (configure with CC=clang), not ${CMAKE_C_COMPILER_ID}")
  endif()
  # coverage instrumentation + sanitizers for the code under test; whatever links these
  # libraries (the daemons, unit tests) then needs the sanitizer runtimes too
  foreach(lib sbx_common sbx_proto sbx_initproto sbx_files sbx_sandbox sbx_storedb
              sbx_store_handlers libsbx sbx_cli)
    if(TARGET ${lib})
      target_compile_options(${lib} PRIVATE -fsanitize=fuzzer-no-link ${SBX_FUZZ_SAN})
      target_link_options(${lib} INTERFACE -fsanitize=address,undefined)
    endif()
  endforeach()
endif()

# sbx_add_fuzzer(NAME LIBS lib...): skipped (with a note) while a library it needs does not exist
# yet in this tree.
function(sbx_add_fuzzer name)
  cmake_parse_arguments(F "" "" "LIBS" ${ARGN})
  foreach(lib ${F_LIBS})
    if(NOT TARGET ${lib})
      message(STATUS "fuzz: ${name} skipped: target ${lib} does not exist")
      return()
    endif()
  endforeach()
  set(src ${SBX_FUZZ_DIR}/${name}.c)
  if(SBX_FUZZ)
    add_executable(${name} ${src})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer ${SBX_FUZZ_SAN})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    set(run_args -runs=0)
  else()
    add_executable(${name} ${src} ${SBX_FUZZ_DIR}/replay_main.c)
    set(run_args)
  endif()
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  add_test(NAME fuzz.replay.${name} COMMAND ${name} ${run_args} ${SBX_FUZZ_DIR}/corpus/${name})
  set_tests_properties(fuzz.replay.${name} PROPERTIES LABELS fuzz TIMEOUT 120)
endfunction()

sbx_add_fuzzer(fuzz_auth LIBS sbx_common)
sbx_add_fuzzer(fuzz_config LIBS sbx_common)
sbx_add_fuzzer(fuzz_proto LIBS sbx_proto)
sbx_add_fuzzer(fuzz_wire LIBS sbx_initproto)
sbx_add_fuzzer(fuzz_files LIBS sbx_files)
sbx_add_fuzzer(fuzz_cli LIBS sbx_cli)
sbx_add_fuzzer(fuzz_store_keys LIBS sbx_storedb)
sbx_add_fuzzer(fuzz_store_handlers LIBS sbx_store_handlers)
