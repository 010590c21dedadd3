# Unit tests of sbx-store's engine (services/store: keys, db, history, cache, projects, kv,
# checkpoint, retention) and its gRPC handlers. Real RocksDB in temp dirs; one ctest per case.
sbx_add_cmocka_test(test_store_keys SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_store_keys.c
                    LIBS sbx_storedb LABELS unit store)
foreach(t db history cache projects kv)
  sbx_add_cmocka_test(test_store_${t}
                      SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_store_${t}.c
                              ${CMAKE_CURRENT_SOURCE_DIR}/test_store_util.c
                      LIBS sbx_storedb LABELS unit store)
endforeach()
sbx_add_cmocka_test(test_store_handlers
                    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_store_handlers.c
                            ${CMAKE_CURRENT_SOURCE_DIR}/test_store_util.c
                    LIBS sbx_store_handlers LABELS unit store)
