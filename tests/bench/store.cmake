# bench_store_sizes: a million history records and keys in one store; page listing latency.
if(TARGET sbx_storedb)
  add_executable(bench_store_sizes ${CMAKE_CURRENT_SOURCE_DIR}/bench_store_sizes.c)
  target_link_libraries(bench_store_sizes PRIVATE sbx_storedb)
endif()
