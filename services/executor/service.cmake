# sbx-executor binary (main.c wires the sandbox runtime and handlers into the gRPC layer)
add_executable(sbx-executor ${CMAKE_CURRENT_SOURCE_DIR}/main.c)
target_link_libraries(sbx-executor PRIVATE sbx_common)
install(TARGETS sbx-executor RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
