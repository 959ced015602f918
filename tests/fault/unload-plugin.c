/* A plugin linked to libpasha, as a plugin host would dlopen it: one entry
 * that runs a cycle with libpasha called directly. */
#include "unload-cycle.h"

__attribute__((visibility("default"))) int unload_plugin_cycle(int kind, int keep);

int unload_plugin_cycle(int kind, int keep)
{
    static const struct unload_api api = {
        psh_context_options_init, psh_context_create_ext, psh_context_destroy, psh_alloc,
        psh_array_data, psh_array_free, psh_map_blocks, psh_last_error, psh_set_default_kind,
    };
    psh_context *kept;
    return unload_cycle(&api, kind, keep, &kept);  /* a kept context is left alive on purpose */
}
