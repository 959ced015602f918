/* The version macros of pasha_version.h agree with each other, with the
 * library at run time (psh_version, psh_version_number) and with meson's
 * project version (passed as EXPECTED_VERSION). */
#include <pasha/pasha.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    char s[64];
    int failed = 0;
    snprintf(s, sizeof s, "%d.%d.%d", PSH_VERSION_MAJOR, PSH_VERSION_MINOR, PSH_VERSION_PATCH);
#define CHECK(cond) do { if (!(cond)) { printf("FAIL: %s\n", #cond); failed = 1; } } while (0)
    CHECK(strcmp(s, PSH_VERSION_STRING) == 0);
    CHECK(strcmp(PSH_VERSION_STRING, EXPECTED_VERSION) == 0);
    CHECK(strcmp(psh_version(), EXPECTED_VERSION) == 0);
    CHECK(PSH_VERSION_NUMBER == PSH_VERSION_MAJOR * 10000 + PSH_VERSION_MINOR * 100 + PSH_VERSION_PATCH);
    CHECK(psh_version_number() == (unsigned)PSH_VERSION_NUMBER);
    printf("%s: libpasha %s, psh_version_number() %u, PSH_VERSION_NUMBER %d\n", failed ? "FAIL" : "ok",
           psh_version(), psh_version_number(), PSH_VERSION_NUMBER);
    return failed;
}
