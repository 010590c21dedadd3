# bench_ports.cmake: sbx-bench-ports, the port forwarder against direct loopback to the same
# servers (tests/bench/bench_ports.c; needs root for its network namespace).
if(TARGET sbx_ports)
  add_executable(sbx-bench-ports ${CMAKE_CURRENT_SOURCE_DIR}/bench_ports.c)
  target_link_libraries(sbx-bench-ports PRIVATE sbx_ports CURL::libcurl Threads::Threads)
endif()
