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
