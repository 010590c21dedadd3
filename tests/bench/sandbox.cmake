# bench_sandbox: warm spawn+wait of /bin/true through a sandbox init vs posix_spawn+wait, and
# sandbox create time (the unit-test source built with -DSBX_BENCH). Not part of ctest.
if(TARGET sbx_sandbox)
  add_executable(bench_sandbox ${CMAKE_SOURCE_DIR}/tests/unit/test_sandbox.c)
  target_compile_definitions(bench_sandbox PRIVATE SBX_BENCH)
  target_include_directories(bench_sandbox PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit
                             ${CMAKE_SOURCE_DIR}/tests/security ${CMOCKA_INCLUDE_DIRS})
  target_link_libraries(bench_sandbox PRIVATE sbx_sandbox ${CMOCKA_LINK_LIBRARIES})
  add_dependencies(bench_sandbox sbx-init)
endif()
# bench_sandbox_pool: interleaved same-run baselines for warm spawn, Run through the process
# table (and bwrap when installed), and pooled vs cold create. Not part of ctest.
if(TARGET sbx_sandbox AND EXISTS ${CMAKE_CURRENT_LIST_DIR}/bench_sandbox_pool.c)
  add_executable(bench_sandbox_pool ${CMAKE_CURRENT_LIST_DIR}/bench_sandbox_pool.c)
  target_link_libraries(bench_sandbox_pool PRIVATE sbx_sandbox)
  add_dependencies(bench_sandbox_pool sbx-init)
endif()
