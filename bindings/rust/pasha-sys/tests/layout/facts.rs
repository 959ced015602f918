// Generated with src/bindings.rs by bindings/rust/bindgen: do not edit.
facts! {
    structs {
        psh_error_info { struct_size, code, worker_id, index, signal, exit_status, callback, message }
        psh_context_options { struct_size, kind, num_workers, persistent, schedule, chunk, pin_cpus }
        psh_alloc_options { struct_size, order, fill, per_worker }
        psh_view { data, dtype, ndim, shape, strides }
        psh_functor_vtable { struct_size, length, get, worker_begin, worker_end }
        psh_map_options { struct_size, schedule, chunk, progress, progress_data, cancel, user_data_size, worker_begin, worker_end }
    }
    enums { psh_kind, psh_schedule, psh_dtype, psh_order }
    consts { PSH_VERSION_MAJOR, PSH_VERSION_MINOR, PSH_VERSION_PATCH, PSH_VERSION_NUMBER, PSH_OK, PSH_EINVAL, PSH_ENOMEM, PSH_ESYS, PSH_EKERNEL, PSH_EWORKER, PSH_ECANCELED, PSH_ENOTSUP, PSH_SERIAL, PSH_THREADS, PSH_PROCESSES, PSH_MPI, PSH_SCHEDULE_CONTEXT, PSH_SCHEDULE_STATIC, PSH_SCHEDULE_DYNAMIC, PSH_SCHEDULE_GUIDED, PSH_INT8, PSH_UINT8, PSH_INT16, PSH_UINT16, PSH_INT32, PSH_UINT32, PSH_INT64, PSH_UINT64, PSH_FLOAT32, PSH_FLOAT64, PSH_COMPLEX64, PSH_COMPLEX128, PSH_ORDER_DEFAULT, PSH_ORDER_C, PSH_ORDER_F, PSH_PER_WORKER_PADDED }
    strings { PSH_VERSION_STRING }
}
