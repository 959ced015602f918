"""
    Pasha

Julia bindings to libpasha: map a function over every index of a large
collection in parallel, writing results straight into shared-memory arrays.

Every C function of `include/pasha/pasha.h` has a thin `ccall` wrapper with
the C name (`psh_map`, `psh_alloc`, ...); on top of them:

* [`Context`](@ref): a `:serial` or `:threads` context (finalized with the
  garbage collector, or `close(ctx)`).
* [`SharedArray`](@ref): an `AbstractArray` in POSIX shared memory, in
  Julia's column-major order (`PSH_ORDER_F`), backed by `unsafe_wrap`.
* [`pmap_indices`](@ref), [`pmap_array`](@ref): run a Julia function for every index,
  through a block kernel (`psh_map_blocks`) specialized on the function's
  type, which does not allocate per item.

Fork-based `:processes` contexts are refused: a forked child of a Julia
process holds only the thread that called `fork`, while the Julia runtime
(garbage collector, task scheduler, compiler, I/O event loop) relies on its
other threads and on locks they may hold at that moment, so running Julia
code in the child can deadlock or crash. Use threads, or call C kernels
through the raw `psh_*` wrappers if you must fork.

Threads contexts call Julia from threads libpasha created; Julia >= 1.9
adopts such foreign threads automatically, earlier versions crash. While
the calling thread waits inside `psh_map` for the other workers it is not
at a GC safepoint, so a kernel that allocates enough to trigger a garbage
collection on a pool thread can deadlock the map (the collector waits
for worker 0, which waits in C for the pool): keep kernels on threads
contexts allocation-free (write into preallocated `SharedArray`s), or use
`:serial`; the glue itself does not allocate per item. This has not been
run: no Julia toolchain on our machines.

The library is looked up as `ENV["PASHA_LIBRARY"]` (default `"libpasha"`,
found through the dynamic loader's path) when the module is loaded.
"""
module Pasha

export Context, SharedArray, PashaError, pmap_indices, pmap_array, num_workers

"""The libpasha shared library: `ENV["PASHA_LIBRARY"]` or `"libpasha"`."""
const libpasha = get(ENV, "PASHA_LIBRARY", "libpasha")

# ---------------------------------------------------------------------------
# Constants (the checker compares them with the header's enums)
# ---------------------------------------------------------------------------

"""Status codes (`PSH_OK`, negative `PSH_E*`)."""
const PSH_OK = Cint(0)
const PSH_EINVAL = Cint(-1)
const PSH_ENOMEM = Cint(-2)
const PSH_ESYS = Cint(-3)
const PSH_EKERNEL = Cint(-4)
const PSH_EWORKER = Cint(-5)
const PSH_ECANCELED = Cint(-6)
const PSH_ENOTSUP = Cint(-7)

"""Context kinds (`psh_kind`)."""
const PSH_SERIAL = Cint(0)
const PSH_THREADS = Cint(1)
const PSH_PROCESSES = Cint(2)
const PSH_MPI = Cint(3)

"""Schedules (`psh_schedule`)."""
const PSH_SCHEDULE_CONTEXT = Cint(-1)
const PSH_SCHEDULE_STATIC = Cint(0)
const PSH_SCHEDULE_DYNAMIC = Cint(1)
const PSH_SCHEDULE_GUIDED = Cint(2)

"""Element types (`psh_dtype`)."""
const PSH_INT8 = Cint(0)
const PSH_UINT8 = Cint(1)
const PSH_INT16 = Cint(2)
const PSH_UINT16 = Cint(3)
const PSH_INT32 = Cint(4)
const PSH_UINT32 = Cint(5)
const PSH_INT64 = Cint(6)
const PSH_UINT64 = Cint(7)
const PSH_FLOAT32 = Cint(8)
const PSH_FLOAT64 = Cint(9)
const PSH_COMPLEX64 = Cint(10)
const PSH_COMPLEX128 = Cint(11)

"""Memory orders (`psh_order`)."""
const PSH_ORDER_DEFAULT = Cint(0)
const PSH_ORDER_C = Cint(1)
const PSH_ORDER_F = Cint(2)

"""`psh_alloc_options.per_worker`: rows 128-byte aligned and at least 128 bytes
apart (not contiguous: index the rows with the strides)."""
const PSH_PER_WORKER_PADDED = Cint(2)

# ---------------------------------------------------------------------------
# Structs, field for field as in pasha.h (checked by the checker)
# ---------------------------------------------------------------------------

"""`psh_context_options`; initialize with `psh_context_options_init`."""
mutable struct psh_context_options
    struct_size::Csize_t
    kind::Cint
    num_workers::Cint
    persistent::Cint
    schedule::Cint
    chunk::Csize_t
    pin_cpus::Cint
end
psh_context_options() = psh_context_options(0, 0, 0, 0, 0, 0, 0)

"""`psh_alloc_options`; initialize with `psh_alloc_options_init`."""
mutable struct psh_alloc_options
    struct_size::Csize_t
    order::Cint
    fill::Ptr{Cvoid}
    per_worker::Cint
end
psh_alloc_options() = psh_alloc_options(0, 0, C_NULL, 0)

"""`psh_view`: a sub-array handed to kernels by `psh_functor_array`."""
struct psh_view
    data::Ptr{Cvoid}
    dtype::Cint
    ndim::Cint
    shape::Ptr{Csize_t}
    strides::Ptr{Cptrdiff_t}
end

"""`psh_functor_vtable`: callbacks (from `@cfunction`) of a custom functor."""
mutable struct psh_functor_vtable
    struct_size::Csize_t
    length::Ptr{Cvoid}
    get::Ptr{Cvoid}
    worker_begin::Ptr{Cvoid}
    worker_end::Ptr{Cvoid}
end

"""`psh_map_options`; initialize with `psh_map_options_init_size(opts)` (the
exported `psh_map_options_init` fills only pasha 0.2's fields).
`worker_begin` / `worker_end`: `C_NULL` or a `@cfunction` of
`Cint (Ptr{Cvoid}, Cint)` run in each worker once per map."""
mutable struct psh_map_options
    struct_size::Csize_t
    schedule::Cint
    chunk::Csize_t
    progress::Ptr{Cvoid}
    progress_data::Ptr{Cvoid}
    cancel::Ptr{Cint}
    user_data_size::Csize_t
    worker_begin::Ptr{Cvoid}
    worker_end::Ptr{Cvoid}
end
psh_map_options() = psh_map_options(0, 0, 0, C_NULL, C_NULL, C_NULL, 0, C_NULL, C_NULL)

"""`psh_error_info`: what `psh_last_error_info` says about this thread's last
failed call, as data (`callback` and `message` are C strings, `callback`
`C_NULL` when none; `index` 0-based, -1: none; `worker_id` -1: none).
`psh_error_info()` sets `struct_size`."""
mutable struct psh_error_info
    struct_size::Csize_t
    code::Cint
    worker_id::Cint
    index::Clonglong
    signal::Cint
    exit_status::Cint
    callback::Ptr{Cchar}
    message::Ptr{Cchar}
end
psh_error_info() = psh_error_info(Csize_t(sizeof(psh_error_info)), 0, -1, -1, 0, -1, C_NULL, C_NULL)

# ---------------------------------------------------------------------------
# Raw wrappers: one per C function, same name and arguments
# ---------------------------------------------------------------------------

"""`psh_strerror(code)`: the name and meaning of a status code."""
psh_strerror(code) = unsafe_string(ccall((:psh_strerror, libpasha), Cstring, (Cint,), code))
"""`psh_last_error()`: the message of this thread's last failed call."""
psh_last_error() = unsafe_string(ccall((:psh_last_error, libpasha), Cstring, ()))
"""`psh_last_error_info(info)`: fill a `psh_error_info` about this thread's last call."""
psh_last_error_info(info) = ccall((:psh_last_error_info, libpasha), Cint, (Ref{psh_error_info},), info)

"""`last_error_info()`: this thread's `psh_last_error_info` as a NamedTuple
(`callback` `nothing` when none)."""
function last_error_info()
    info = psh_error_info()
    check(psh_last_error_info(info))
    cb = info.callback == C_NULL ? nothing : unsafe_string(info.callback)
    msg = info.message == C_NULL ? "" : unsafe_string(info.message)
    return (code = info.code, worker_id = info.worker_id, index = info.index, signal = info.signal,
            exit_status = info.exit_status, callback = cb, message = msg)
end

"""`psh_cpu_count()`: the default number of workers (PASHA_NUM_WORKERS, else
the affinity mask, the cgroup CPU quota and SLURM_CPUS_PER_TASK)."""
psh_cpu_count() = ccall((:psh_cpu_count, libpasha), Cint, ())

"""`psh_version()`: the library version string."""
psh_version() = unsafe_string(ccall((:psh_version, libpasha), Cstring, ()))

"""`psh_version_number()`: the library version as MAJOR*10000 + MINOR*100 + PATCH."""
psh_version_number() = ccall((:psh_version_number, libpasha), Cuint, ())

"""`psh_context_create(out, kind, num_workers)`; `out` is a `Ref{Ptr{Cvoid}}`."""
psh_context_create(out, kind, num_workers) =
    ccall((:psh_context_create, libpasha), Cint, (Ref{Ptr{Cvoid}}, Cint, Cint), out, kind, num_workers)
"""`psh_context_reference(ctx)`."""
psh_context_reference(ctx) = ccall((:psh_context_reference, libpasha), Ptr{Cvoid}, (Ptr{Cvoid},), ctx)
"""`psh_context_destroy(ctx)`."""
psh_context_destroy(ctx) = ccall((:psh_context_destroy, libpasha), Cvoid, (Ptr{Cvoid},), ctx)
"""`psh_context_num_workers(ctx)`."""
psh_context_num_workers(ctx) = ccall((:psh_context_num_workers, libpasha), Cint, (Ptr{Cvoid},), ctx)
"""`psh_context_kind(ctx)`."""
psh_context_kind(ctx) = ccall((:psh_context_kind, libpasha), Cint, (Ptr{Cvoid},), ctx)
"""`psh_get_default_context()`: borrowed; do not destroy."""
psh_get_default_context() = ccall((:psh_get_default_context, libpasha), Ptr{Cvoid}, ())
"""`psh_default_context_ref()`: an owned reference; destroy it with `psh_context_destroy`."""
psh_default_context_ref() = ccall((:psh_default_context_ref, libpasha), Ptr{Cvoid}, ())
"""`psh_register_fork_hooks(prepare, parent, child, data)`: C function pointers."""
psh_register_fork_hooks(prepare, parent, child, data) =
    ccall((:psh_register_fork_hooks, libpasha), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}),
          prepare, parent, child, data)
"""`psh_set_default_context(ctx)`."""
psh_set_default_context(ctx) = ccall((:psh_set_default_context, libpasha), Cint, (Ptr{Cvoid},), ctx)
"""`psh_set_default_kind(kind, num_workers)`."""
psh_set_default_kind(kind, num_workers) =
    ccall((:psh_set_default_kind, libpasha), Cint, (Cint, Cint), kind, num_workers)
"""`psh_context_options_init(opts)`."""
psh_context_options_init(opts) =
    ccall((:psh_context_options_init, libpasha), Cvoid, (Ref{psh_context_options},), opts)
"""`psh_context_create_ext(out, opts)`."""
psh_context_create_ext(out, opts) =
    ccall((:psh_context_create_ext, libpasha), Cint, (Ref{Ptr{Cvoid}}, Ref{psh_context_options}), out, opts)
"""`psh_context_schedule(ctx)`."""
psh_context_schedule(ctx) = ccall((:psh_context_schedule, libpasha), Cint, (Ptr{Cvoid},), ctx)

"""`psh_alloc_options_init(opts)`."""
psh_alloc_options_init(opts) =
    ccall((:psh_alloc_options_init, libpasha), Cvoid, (Ref{psh_alloc_options},), opts)
"""`psh_alloc(out, ctx, dtype, ndim, shape, opts)`; `shape` a `Vector{Csize_t}`."""
psh_alloc(out, ctx, dtype, ndim, shape, opts) =
    ccall((:psh_alloc, libpasha), Cint,
          (Ref{Ptr{Cvoid}}, Ptr{Cvoid}, Cint, Cint, Ptr{Csize_t}, Ref{psh_alloc_options}),
          out, ctx, dtype, ndim, shape, opts)
"""`psh_alloc_like(out, ctx, like, opts)`."""
psh_alloc_like(out, ctx, like, opts) =
    ccall((:psh_alloc_like, libpasha), Cint, (Ref{Ptr{Cvoid}}, Ptr{Cvoid}, Ptr{Cvoid}, Ref{psh_alloc_options}),
          out, ctx, like, opts)
"""`psh_array_free(a)`."""
psh_array_free(a) = ccall((:psh_array_free, libpasha), Cvoid, (Ptr{Cvoid},), a)
"""`psh_array_data(a)`."""
psh_array_data(a) = ccall((:psh_array_data, libpasha), Ptr{Cvoid}, (Ptr{Cvoid},), a)
"""`psh_array_dtype(a)`."""
psh_array_dtype(a) = ccall((:psh_array_dtype, libpasha), Cint, (Ptr{Cvoid},), a)
"""`psh_array_ndim(a)`."""
psh_array_ndim(a) = ccall((:psh_array_ndim, libpasha), Cint, (Ptr{Cvoid},), a)
"""`psh_array_shape(a)`: pointer to ndim `Csize_t`."""
psh_array_shape(a) = ccall((:psh_array_shape, libpasha), Ptr{Csize_t}, (Ptr{Cvoid},), a)
"""`psh_array_strides(a)`: pointer to ndim byte strides."""
psh_array_strides(a) = ccall((:psh_array_strides, libpasha), Ptr{Cptrdiff_t}, (Ptr{Cvoid},), a)
"""`psh_array_order(a)`."""
psh_array_order(a) = ccall((:psh_array_order, libpasha), Cint, (Ptr{Cvoid},), a)
"""`psh_array_size(a)`."""
psh_array_size(a) = ccall((:psh_array_size, libpasha), Csize_t, (Ptr{Cvoid},), a)
"""`psh_array_nbytes(a)`."""
psh_array_nbytes(a) = ccall((:psh_array_nbytes, libpasha), Csize_t, (Ptr{Cvoid},), a)
"""`psh_dtype_size(dtype)`."""
psh_dtype_size(dtype) = ccall((:psh_dtype_size, libpasha), Csize_t, (Cint,), dtype)

"""`psh_functor_range(out, n)`."""
psh_functor_range(out, n) = ccall((:psh_functor_range, libpasha), Cint, (Ref{Ptr{Cvoid}}, Csize_t), out, n)
"""`psh_functor_sequence(out, base, count, stride)`."""
psh_functor_sequence(out, base, count, stride) =
    ccall((:psh_functor_sequence, libpasha), Cint, (Ref{Ptr{Cvoid}}, Ptr{Cvoid}, Csize_t, Csize_t),
          out, base, count, stride)
"""`psh_functor_array(out, a, axis)`: 0-based axis of the C shape."""
psh_functor_array(out, a, axis) =
    ccall((:psh_functor_array, libpasha), Cint, (Ref{Ptr{Cvoid}}, Ptr{Cvoid}, Cint), out, a, axis)
"""`psh_functor_strided(out, data, dtype, ndim, shape, strides, axis)`."""
psh_functor_strided(out, data, dtype, ndim, shape, strides, axis) =
    ccall((:psh_functor_strided, libpasha), Cint,
          (Ref{Ptr{Cvoid}}, Ptr{Cvoid}, Cint, Cint, Ptr{Csize_t}, Ptr{Cptrdiff_t}, Cint),
          out, data, dtype, ndim, shape, strides, axis)
"""`psh_functor_custom(out, vt, self)`."""
psh_functor_custom(out, vt, self) =
    ccall((:psh_functor_custom, libpasha), Cint, (Ref{Ptr{Cvoid}}, Ref{psh_functor_vtable}, Ptr{Cvoid}),
          out, vt, self)
"""`psh_functor_length(f)`."""
psh_functor_length(f) = ccall((:psh_functor_length, libpasha), Csize_t, (Ptr{Cvoid},), f)
"""`psh_functor_destroy(f)`."""
psh_functor_destroy(f) = ccall((:psh_functor_destroy, libpasha), Cvoid, (Ptr{Cvoid},), f)

"""`psh_map(ctx, kernel, user_data, functor)`; kernel from `@cfunction`."""
psh_map(ctx, kernel, user_data, functor) =
    ccall((:psh_map, libpasha), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}),
          ctx, kernel, user_data, functor)
"""`psh_map_blocks(ctx, kernel, user_data, n)`."""
psh_map_blocks(ctx, kernel, user_data, n) =
    ccall((:psh_map_blocks, libpasha), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}, Csize_t),
          ctx, kernel, user_data, n)
"""`psh_map_options_init_size(opts, struct_size = sizeof(psh_map_options))`."""
psh_map_options_init_size(opts, struct_size = sizeof(psh_map_options)) =
    ccall((:psh_map_options_init_size, libpasha), Cvoid, (Ref{psh_map_options}, Csize_t), opts, struct_size)
"""`psh_map_options_init(opts)`."""
psh_map_options_init(opts) = ccall((:psh_map_options_init, libpasha), Cvoid, (Ref{psh_map_options},), opts)
"""`psh_map_ext(ctx, kernel, user_data, functor, opts)`."""
psh_map_ext(ctx, kernel, user_data, functor, opts) =
    ccall((:psh_map_ext, libpasha), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}, Ref{psh_map_options}),
          ctx, kernel, user_data, functor, opts)
"""`psh_map_blocks_ext(ctx, kernel, user_data, n, opts)`."""
psh_map_blocks_ext(ctx, kernel, user_data, n, opts) =
    ccall((:psh_map_blocks_ext, libpasha), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, Ptr{Cvoid}, Csize_t, Ref{psh_map_options}),
          ctx, kernel, user_data, n, opts)

# ---------------------------------------------------------------------------
# The Julia API
# ---------------------------------------------------------------------------

"""
    PashaError(code, message)

A failed libpasha call: `code` is the negative `PSH_E*` status, `message`
what `psh_last_error()` said (plus the Julia exception for kernel errors).
"""
struct PashaError <: Exception
    code::Cint
    message::String
end
Base.showerror(io::IO, e::PashaError) = print(io, psh_strerror(e.code), ": ", e.message)

check(rc) = rc == PSH_OK ? nothing : throw(PashaError(rc, psh_last_error()))

"""
    Context(kind::Symbol = :threads, workers::Integer = 0)

A libpasha context of kind `:serial` or `:threads` with `workers` workers
(0: `PASHA_NUM_WORKERS` or the number of CPUs). `:processes` throws an
`ArgumentError`: forking a Julia process is unsafe (see the module docs).
"""
mutable struct Context
    ptr::Ptr{Cvoid}
    function Context(kind::Symbol = :threads, workers::Integer = 0)
        if kind === :serial
            k = PSH_SERIAL
        elseif kind === :threads
            k = PSH_THREADS
        elseif kind === :processes
            throw(ArgumentError("fork-based :processes contexts are unsafe with the Julia runtime; use :threads"))
        else
            throw(ArgumentError("unknown context kind $kind (use :serial or :threads)"))
        end
        out = Ref{Ptr{Cvoid}}(C_NULL)
        check(psh_context_create(out, k, Cint(workers)))
        ctx = new(out[])
        finalizer(close, ctx)
    end
end

"""`close(ctx)`: drop the context now (idempotent)."""
function Base.close(ctx::Context)
    ctx.ptr == C_NULL || psh_context_destroy(ctx.ptr)
    ctx.ptr = C_NULL
    nothing
end

"""`num_workers(ctx)`: the number of workers; worker ids run 0:n-1."""
num_workers(ctx::Context) = Int(psh_context_num_workers(ctx.ptr))

dtype_of(::Type{Int8}) = PSH_INT8
dtype_of(::Type{UInt8}) = PSH_UINT8
dtype_of(::Type{Int16}) = PSH_INT16
dtype_of(::Type{UInt16}) = PSH_UINT16
dtype_of(::Type{Int32}) = PSH_INT32
dtype_of(::Type{UInt32}) = PSH_UINT32
dtype_of(::Type{Int64}) = PSH_INT64
dtype_of(::Type{UInt64}) = PSH_UINT64
dtype_of(::Type{Float32}) = PSH_FLOAT32
dtype_of(::Type{Float64}) = PSH_FLOAT64
dtype_of(::Type{ComplexF32}) = PSH_COMPLEX64
dtype_of(::Type{ComplexF64}) = PSH_COMPLEX128

"""
    SharedArray{T}(ctx, dims...; per_worker = false)

A zero-filled array in POSIX shared memory, column-major (`PSH_ORDER_F`),
usable as any Julia array (`unsafe_wrap` of the shared data). With
`per_worker = true` a last dimension of `num_workers(ctx)` is added, to be
indexed by `worker + 1` in kernels. Freed by the garbage collector or by
`close(a)`; do not use it (or `parent(a)`) afterwards.
"""
mutable struct SharedArray{T,N} <: AbstractArray{T,N}
    ptr::Ptr{Cvoid}
    data::Array{T,N}
end

function SharedArray{T}(ctx::Context, dims::Integer...; per_worker::Bool = false) where {T}
    opts = psh_alloc_options()
    psh_alloc_options_init(opts)
    opts.order = PSH_ORDER_F
    opts.per_worker = per_worker ? 1 : 0
    any(d -> d < 0, dims) && throw(ArgumentError("negative dimension in $dims"))
    shape = Csize_t[dims...]
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(psh_alloc(out, ctx.ptr, dtype_of(T), Cint(length(shape)), shape, opts))
    p = out[]
    nd = Int(psh_array_ndim(p))
    full = ntuple(i -> Int(unsafe_load(psh_array_shape(p), i)), nd)
    data = unsafe_wrap(Array, Ptr{T}(psh_array_data(p)), full; own = false)
    a = SharedArray{T,nd}(p, data)
    finalizer(close, a)
end

"""`close(a)`: free the shared memory now (idempotent)."""
function Base.close(a::SharedArray)
    a.ptr == C_NULL || psh_array_free(a.ptr)
    a.ptr = C_NULL
    nothing
end
Base.size(a::SharedArray) = size(a.data)
Base.getindex(a::SharedArray, i::Int) = a.data[i]
Base.setindex!(a::SharedArray, v, i::Int) = (a.data[i] = v)
Base.IndexStyle(::Type{<:SharedArray}) = IndexLinear()
Base.parent(a::SharedArray) = a.data
Base.unsafe_convert(::Type{Ptr{T}}, a::SharedArray{T}) where {T} = pointer(a.data)

# The kernel glue. A map is one psh_map_blocks over 0:n-1 whose block
# kernel is specialized on the type of the Julia function (BlockCall{F}):
# the per-item loop calls `f` type-stably, without boxing through `::Any`
# and without wrapping memory per item, so it does not allocate (the GC
# deadlock of threads contexts described above needs an allocating
# kernel). An exception stops the block and is kept for the caller (it
# must not unwind through C); the non-zero return is PSH_EKERNEL.
mutable struct BlockCall{F}
    f::F
    error::Any     # the first exception, or nothing
    index::Int     # the 1-based index it came from
    lock::ReentrantLock
end

function block_trampoline(call::BlockCall{F}, worker::Cint, first::Csize_t, last::Csize_t)::Cint where {F}
    f = call.f
    w = Int(worker)
    i = Int(first)
    stop = Int(last)
    try
        while i < stop
            i += 1
            f(w, i)
        end
        return Cint(0)
    catch e
        lock(call.lock) do
            if call.error === nothing
                call.error = e
                call.index = i
            end
        end
        return Cint(1)
    end
end

function run_blocks(ctx::Context, f::F, n::Integer) where {F}
    call = BlockCall{F}(f, nothing, 0, ReentrantLock())
    # Ref{BlockCall{F}}: the C user_data pointer is the object itself.
    tramp = @cfunction(block_trampoline, Cint, (Ref{BlockCall{F}}, Cint, Csize_t, Csize_t))
    rc = GC.@preserve call psh_map_blocks(ctx.ptr, tramp, pointer_from_objref(call), Csize_t(n))
    if rc != PSH_OK
        msg = psh_last_error()
        if call.error !== nothing
            msg *= " (index $(call.index - 1), Julia index $(call.index): " * sprint(showerror, call.error) * ")"
        end
        throw(PashaError(rc, msg))
    end
    nothing
end

"""
    pmap_indices(f, ctx, n)

Call `f(worker, i)` for every `i` in `1:n`, split among the workers of
`ctx`; `worker` is 0-based. Write results into [`SharedArray`](@ref)s.
An exception in `f` stops the map and throws a `PashaError` with code
`PSH_EKERNEL`. The glue does not allocate per item; keep `f` free of
allocations too on `:threads` contexts (see the module docstring).
"""
function pmap_indices(f::F, ctx::Context, n::Integer) where {F}
    n >= 0 || throw(ArgumentError("n must be >= 0, got $n"))
    run_blocks(ctx, f, n)
end

# The item function of pmap_array: slice j of the preallocated array
# along its last dimension, as a view (no allocation, no unsafe_wrap).
struct SliceCall{F,A,N}
    f::F
    data::A
end
(s::SliceCall{F,A,N})(w::Int, j::Int) where {F,A,N} =
    s.f(w, j, view(s.data, ntuple(_ -> Colon(), Val(N - 1))..., j))

"""
    pmap_array(f, ctx, a::SharedArray)

Call `f(worker, j, slice)` for every slice `j` of `a` along its last
dimension (a column of a matrix), `slice` a view (`SubArray`) of the shared
memory.
"""
function pmap_array(f::F, ctx::Context, a::SharedArray{T,N}) where {F,T,N}
    data = a.data
    run_blocks(ctx, SliceCall{F,typeof(data),N}(f, data), size(data, N))
end

end # module
