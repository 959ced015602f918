/* Native kernels for test_native.py, compiled by the test with cc. */
#include <stddef.h>
#include <pasha/pasha.h>

/* out[index] = 3 * value, over a 1-d float64 array (value: psh_view *). */
int triple_it(void *user_data, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    const psh_view *v = (const psh_view *)value;
    ((double *)user_data)[index] = 3.0 * *(const double *)v->data;
    return 0;
}

/* out[index] = index * index, over a range (value NULL). */
int square_index(void *user_data, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((double *)user_data)[index] = (double)index * (double)index;
    return 0;
}

/* Fails at index 7. */
int fail_at_7(void *user_data, int worker_id, size_t index, const void *value)
{
    (void)user_data;
    (void)worker_id;
    (void)value;
    return index == 7 ? 42 : 0;
}
