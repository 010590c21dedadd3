# Escape attempts against the sandbox file layer: each case asserts the exact errno/outcome.
sbx_add_cmocka_test(test_files_escape SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_files_escape.c
                    LIBS sbx_files LABELS security)
target_include_directories(test_files_escape PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
