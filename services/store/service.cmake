# sbx-store binary (main.c wires the engine, handlers and metrics into the gRPC layer)
add_executable(sbx-store ${CMAKE_CURRENT_SOURCE_DIR}/main.c ${CMAKE_CURRENT_SOURCE_DIR}/store_metrics.c)
target_link_libraries(sbx-store PRIVATE sbx_store_handlers sbx_storedb sbx_common)
install(TARGETS sbx-store RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
