# service.cmake: the sbx-executor gRPC service. sbx_executor_svc is everything but main()
# (registry, execution table, outbox, store client, validation, handlers) so unit tests link it;
# the port handlers use the forwarder and dev-server readiness (ports.cmake: sbx_ports);
# sbx-executor is main.c wiring it into the gRPC server. Needs the sandbox runtime
# (sandbox.cmake: sbx_sandbox, sbx-init) and the file layer (files.cmake: sbx_files).
if(TARGET sbx_sandbox AND TARGET sbx_files AND TARGET sbx_ports)
  add_library(sbx_executor_svc STATIC
    ${CMAKE_CURRENT_LIST_DIR}/exec_validate.c
    ${CMAKE_CURRENT_LIST_DIR}/exec_cmdkey.c
    ${CMAKE_CURRENT_LIST_DIR}/registry.c
    ${CMAKE_CURRENT_LIST_DIR}/exectab.c
    ${CMAKE_CURRENT_LIST_DIR}/outbox.c
    ${CMAKE_CURRENT_LIST_DIR}/store_client.c
    ${CMAKE_CURRENT_LIST_DIR}/handlers_common.c
    ${CMAKE_CURRENT_LIST_DIR}/handlers_sandbox.c
    ${CMAKE_CURRENT_LIST_DIR}/handlers_exec.c
    ${CMAKE_CURRENT_LIST_DIR}/handlers_proc.c
    ${CMAKE_CURRENT_LIST_DIR}/handlers_files.c
    ${CMAKE_CURRENT_LIST_DIR}/handlers_ports.c)
  target_include_directories(sbx_executor_svc PUBLIC ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(sbx_executor_svc PUBLIC sbx_sandbox sbx_files sbx_ports sbx_common Threads::Threads)
endif()

add_executable(sbx-executor ${CMAKE_CURRENT_LIST_DIR}/main.c)
if(TARGET sbx_executor_svc)
  target_link_libraries(sbx-executor PRIVATE sbx_executor_svc)
  add_dependencies(sbx-executor sbx-init)
else()
  target_link_libraries(sbx-executor PRIVATE sbx_common)
endif()
install(TARGETS sbx-executor RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
