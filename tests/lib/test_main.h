/* test_main.h: a main() for cmocka test binaries that runs one case when its name is given as
 * argv[1] (how ctest registers each case as its own test), or all of them otherwise. */
#ifndef SBX_TEST_MAIN_H
#define SBX_TEST_MAIN_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define SBX_TEST_MAIN(tests)                                                                       \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        if (argc > 1)                                                                              \
            cmocka_set_test_filter(argv[1]);                                                       \
        return cmocka_run_group_tests(tests, NULL, NULL);                                          \
    }
#endif
