# bench_files: the file layer's timing cases (4 KiB write/read p50, 1000-file upload) with their
# same-run baselines; the unit-test sources built with -DSBX_BENCH. Not part of ctest.
if(TARGET sbx_files)
  foreach(t files files_upload)
    add_executable(bench_${t} ${CMAKE_SOURCE_DIR}/tests/unit/test_${t}.c)
    target_compile_definitions(bench_${t} PRIVATE SBX_BENCH)
    target_include_directories(bench_${t} PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit ${CMOCKA_INCLUDE_DIRS})
    target_link_libraries(bench_${t} PRIVATE sbx_files ${CMOCKA_LINK_LIBRARIES})
  endforeach()
endif()
