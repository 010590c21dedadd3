# ports.cmake: sbx_ports, the port forwarder (portfwd.c: host listeners relayed into sandbox
# network namespaces) and dev-server readiness over libcurl (devserver.c), which uses the
# sandbox runtime's process table.
add_library(sbx_ports STATIC
  ${CMAKE_CURRENT_LIST_DIR}/portfwd.c
  ${CMAKE_CURRENT_LIST_DIR}/devserver.c)
target_include_directories(sbx_ports PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbx_ports PUBLIC sbx_sandbox sbx_common CURL::libcurl Threads::Threads)
