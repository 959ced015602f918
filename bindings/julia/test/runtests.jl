# Tests of Pasha.jl: real maps on serial and threads contexts. Run with
#   PASHA_LIBRARY=<build>/libpasha.so julia --project=bindings/julia -e 'using Pkg; Pkg.test()'
using Test
using Pasha
using Pasha: PSH_EKERNEL, PSH_EINVAL

@testset "Pasha.jl" begin
    @test !isempty(Pasha.psh_version())
    @test Pasha.psh_cpu_count() >= 1

    for kind in (:serial, :threads)
        ctx = Context(kind, 3)
        @test num_workers(ctx) == (kind === :serial ? 1 : 3)

        squares = SharedArray{Float64}(ctx, 1000)
        pmap_indices((w, i) -> (squares[i] = (i - 1)^2), ctx, 1000)
        @test squares == [(i - 1)^2 for i in 1:1000]

        acc = SharedArray{Int64}(ctx, 1; per_worker = true)
        @test size(acc) == (1, num_workers(ctx))
        pmap_indices((w, i) -> (acc[1, w + 1] += i), ctx, 10_000)
        @test sum(acc) == 10_000 * 10_001 ÷ 2

        m = SharedArray{Float64}(ctx, 4, 5)
        m .= [10j + i for i in 1:4, j in 1:5]
        sums = SharedArray{Float64}(ctx, 5)
        pmap_array((w, j, col) -> (sums[j] = sum(col)), ctx, m)
        @test sums == [40j + 10 for j in 1:5]

        err = try
            pmap_indices((w, i) -> i == 14 ? error("bad item") : nothing, ctx, 100)
            nothing
        catch e
            e
        end
        @test err isa PashaError
        @test err.code == PSH_EKERNEL
        @test occursin("13", err.message) && occursin("bad item", err.message)
        # The same as data (psh_last_error_info): the glue runs block kernels.
        info = Pasha.last_error_info()
        @test info.code == PSH_EKERNEL
        @test info.callback == "block_kernel"
        @test 0 <= info.worker_id < num_workers(ctx)
        @test 0 <= info.index <= 13

        # The glue allocates per map, not per item: a map of 100_000 items
        # allocates no more than one of 10 (after a warm-up compile).
        out = SharedArray{Float64}(ctx, 100_000)
        k = (w, i) -> (out[i] = i; nothing)
        pmap_indices(k, ctx, 10)
        small = @allocated pmap_indices(k, ctx, 10)
        large = @allocated pmap_indices(k, ctx, 100_000)
        @test large <= small + 1024
        @test out[100_000] == 100_000
        close(ctx)
    end

    @test_throws ArgumentError Context(:processes, 2)
    ctx = Context(:serial)
    @test_throws ArgumentError SharedArray{Float64}(ctx, -1)
    err = try
        SharedArray{Float64}(ctx, ones(Int, 40)...)
        nothing
    catch e
        e
    end
    @test err isa PashaError && err.code == PSH_EINVAL
end
