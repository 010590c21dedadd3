# The sandbox file layer: path resolution inside a sandbox root, read/write/stat/list/mkdir/
# remove/move (files.c) and all-or-nothing tree upload (upload.c). No gRPC, no namespaces.
add_library(sbx_files STATIC ${CMAKE_CURRENT_LIST_DIR}/files.c ${CMAKE_CURRENT_LIST_DIR}/upload.c)
target_include_directories(sbx_files PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbx_files PUBLIC sbx_common)
