# Packaging checks: docker-compose.yml validates with Debian's docker-compose (no engine
# needed) and the Kubernetes manifests parse and name the images and flags the binaries have.
add_test(NAME packaging.compose_config
         COMMAND docker-compose -f ${CMAKE_SOURCE_DIR}/docker-compose.yml config -q)
add_test(NAME packaging.k8s_manifests
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_manifests.py
                 ${CMAKE_SOURCE_DIR} $<TARGET_FILE:sbx-store> $<TARGET_FILE:sbx-executor>)
set_tests_properties(packaging.compose_config packaging.k8s_manifests PROPERTIES LABELS "integration")

# Banned unsafe C functions (sprintf, strcpy, atoi, ...) appear nowhere in tracked sources.
add_test(NAME style.banned_functions COMMAND ${CMAKE_SOURCE_DIR}/scripts/check-banned.sh)
set_tests_properties(style.banned_functions PROPERTIES LABELS "unit")
