# bench_executor.cmake: bench-executor (bench_executor.c), the sbx-executor figures against
# same-run baselines (posix_spawn, bwrap); bench_executor.sh starts the services and runs it.
add_executable(bench-executor ${CMAKE_CURRENT_LIST_DIR}/bench_executor.c)
target_link_libraries(bench-executor PRIVATE sbx_common)
