# Unit tests of the sandbox file layer (services/executor/files.c, upload.c). They run as root
# (ownership is checked with a non-root sandbox uid) and use temp dirs as sandbox roots.
foreach(t files files_upload)
  sbx_add_cmocka_test(test_${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
                      LIBS sbx_files LABELS unit)
endforeach()
