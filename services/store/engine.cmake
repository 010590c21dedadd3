# sbx_storedb: sbx-store's storage engine on RocksDB (no gRPC, no protobuf): db, keys, commit,
# history, cache, projects, kv, checkpoint, retention.
add_library(sbx_storedb STATIC
  ${CMAKE_CURRENT_LIST_DIR}/db.c
  ${CMAKE_CURRENT_LIST_DIR}/keys.c
  ${CMAKE_CURRENT_LIST_DIR}/commit.c
  ${CMAKE_CURRENT_LIST_DIR}/history.c
  ${CMAKE_CURRENT_LIST_DIR}/cache.c
  ${CMAKE_CURRENT_LIST_DIR}/projects.c
  ${CMAKE_CURRENT_LIST_DIR}/kv.c
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint.c
  ${CMAKE_CURRENT_LIST_DIR}/retention.c)
target_include_directories(sbx_storedb PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbx_storedb PUBLIC sbx_common PkgConfig::ROCKSDB Threads::Threads)

# sbx_store_handlers: the sbx.v1.StateStore RPCs on the engine (sbx_store_service()).
add_library(sbx_store_handlers STATIC ${CMAKE_CURRENT_LIST_DIR}/handlers.c)
target_include_directories(sbx_store_handlers PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbx_store_handlers PUBLIC sbx_storedb sbx_common sbx_proto)

# sbx-storedb-bench: engine micro-benchmark (synced writers in both commit modes, read latency).
add_executable(sbx-storedb-bench ${CMAKE_CURRENT_LIST_DIR}/storedb_bench.c)
target_link_libraries(sbx-storedb-bench PRIVATE sbx_storedb)
