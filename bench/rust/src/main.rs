//! libpasha's Rust API next to rayon, on 2 workers (a 2-thread rayon pool),
//! in interleaved rounds: every round runs every variant once (odd rounds
//! in reverse order), with a 5 ms pause between variants so that idle
//! spinners of the previous one have gone to sleep. Prints the median and the fastest round of each
//! variant, and each pasha row's ratio to its rayon row: median / median,
//! fastest / fastest, and the median of the per-round ratios ("paired").
//!
//! Rows (issue 15):
//! * fine: 10^7 items, `out[i] = (in[i]*1.5+2)*0.5-1` (f64): per-item cost.
//! * collect: the fine row's results as a new `Vec<f64>` per round
//!   (`map_collect` / rayon `collect`).
//! * fold / reduce: (sum, sum of squares) of the fine row's input
//!   (`fold` / rayon `fold().reduce()`), and the sum of its results
//!   (`reduce` / rayon `map().reduce()`).
//! * imbalanced: item i costs ~i (a dependent chain of i multiply-adds).
//!
//! ```sh
//! PKG_CONFIG_PATH=$PWD/build/meson-uninstalled \
//!     cargo run --release --manifest-path bench/rust/Cargo.toml -- [--rounds R] [--n N] [--imb N] [--dump]
//! ```
use pasha::{sys, Context, Kind, MapOptions, Schedule};
use rayon::prelude::*;
use std::convert::Infallible;
use std::hint::black_box;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

const WORKERS: usize = 2;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

#[inline(always)]
fn fine(x: f64) -> f64 {
    (x * 1.5 + 2.0) * 0.5 - 1.0
}

/// About `i` steps of a dependent multiply-add chain.
#[inline(always)]
fn costly(i: usize) -> f64 {
    let mut x = i as f64;
    for k in 0..i {
        x = x * 0.999_999_9 + (k & 7) as f64 * 1e-9;
    }
    x
}

fn ok() -> Result<(), Infallible> {
    Ok(())
}

struct Variant<'a> {
    name: &'a str,
    run: Box<dyn FnMut() + 'a>,
    times: Vec<Duration>,
}

fn variant<'a>(name: &'a str, run: impl FnMut() + 'a) -> Variant<'a> {
    Variant { name, run: Box::new(run), times: Vec::new() }
}

fn rounds(variants: &mut [Variant<'_>], rounds: usize) {
    for v in variants.iter_mut() {
        (v.run)(); // warm-up: page faults, thread start
    }
    for round in 0..rounds {
        // Odd rounds in reverse order, so that no variant always follows
        // the same neighbour.
        let count = variants.len();
        for k in 0..count {
            let v = &mut variants[if round % 2 == 1 { count - 1 - k } else { k }];
            // 5 ms: longer than any idle spinner here spins (libpasha 0.2
            // ms, rayon microseconds), and short enough that the CPUs do
            // not go idle: on the 2-core VM, after 10-20 ms of idle the
            // next parallel run often lost a CPU for milliseconds
            // (2026-12-08: a 4.3 ms two-worker map took 7-9 ms in 9-12 of
            // 15 runs after a 20 ms sleep, in 0-1 of 15 after 5 ms).
            std::thread::sleep(Duration::from_millis(5));
            let t = Instant::now();
            (v.run)();
            v.times.push(t.elapsed());
        }
    }
}

fn median(t: &[Duration]) -> f64 {
    let mut s: Vec<f64> = t.iter().map(|d| d.as_secs_f64()).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fastest(t: &[Duration]) -> f64 {
    t.iter().map(|d| d.as_secs_f64()).fold(f64::INFINITY, f64::min)
}

fn report(title: &str, variants: &[Variant<'_>], reference: &str, per: usize) {
    let r = variants.iter().find(|v| v.name == reference).expect("the reference row");
    if std::env::args().any(|a| a == "--dump") {
        for v in variants {
            let ms: Vec<String> = v.times.iter().map(|d| format!("{:.2}", d.as_secs_f64() * 1e3)).collect();
            println!("  {}: {}", v.name, ms.join(" "));
        }
    }
    let (rmed, rmin) = (median(&r.times), fastest(&r.times));
    println!("\n{title} ({} rounds)", r.times.len());
    println!(
        "{:<44} {:>12} {:>12} {:>10} {:>10} {:>11} {:>10}",
        "variant", "median ms", "fastest ms", "ns/item", "vs rayon", "fastest vs", "paired vs"
    );
    for v in variants {
        let (m, f) = (median(&v.times), fastest(&v.times));
        // The median of the per-round ratios: both ran in the same round,
        // so a slow spell of the machine that hits the round hits both.
        let paired: Vec<Duration> = v
            .times
            .iter()
            .zip(&r.times)
            .map(|(a, b)| Duration::from_secs_f64(a.as_secs_f64() / b.as_secs_f64()))
            .collect();
        println!(
            "{:<44} {:>12.3} {:>12.3} {:>10.3} {:>9.3}x {:>10.3}x {:>9.3}x",
            v.name,
            m * 1e3,
            f * 1e3,
            m * 1e9 / per as f64,
            m / rmed,
            f / rmin,
            median(&paired)
        );
    }
}

/// The 0.1 path, for comparison: `psh_map` with one indirect call and one
/// `catch_unwind` per item, as the safe API did before the block trampoline.
struct PerItem {
    out: *mut f64,
}
unsafe extern "C" fn per_item_kernel(ud: *mut c_void, _w: c_int, i: usize, value: *const c_void) -> c_int {
    let call = &*(ud as *const PerItem);
    let r = catch_unwind(AssertUnwindSafe(|| {
        *call.out.add(i) = fine(*(value as *const f64));
    }));
    r.is_err() as c_int
}

fn main() -> Result<(), pasha::Error> {
    let n = arg("--n", 10_000_000);
    let imb = arg("--imb", 12_000);
    let r = arg("--rounds", 11);
    println!("libpasha {} vs rayon, {} workers; n = {n}, imbalanced n = {imb}", pasha::version(), WORKERS);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(WORKERS).build().expect("a rayon pool");
    let ctx = Context::new(Kind::Threads, WORKERS)?;

    // ---- fine-grained
    let input: Vec<f64> = (0..n).map(|i| (i % 1000) as f64 * 0.001).collect();
    let mut out_p = ctx.alloc::<f64>(&[n])?;
    let mut out_b = ctx.alloc::<f64>(&[n])?;
    let mut out_o = ctx.alloc::<f64>(&[n])?;
    let mut out_r = vec![0.0f64; n];
    let check = |o: &[f64]| assert!(o.iter().zip(&input).all(|(o, x)| *o == fine(*x)), "a wrong result");
    {
        let mut vs = vec![
            variant("pasha map_into (slice source)", || {
                ctx.map_into(&input[..], &mut out_p, |_w, _i, x, o| {
                    *o = fine(*x);
                    ok()
                })
                .unwrap()
            }),
            variant("pasha map_blocks_into (hand-written loop)", || {
                ctx.map_blocks_into(&mut out_b, |_w, r, chunk| {
                    for (o, x) in chunk.iter_mut().zip(&input[r]) {
                        *o = fine(*x);
                    }
                    ok()
                })
                .unwrap()
            }),
            variant("pasha 0.1 path (psh_map, call per item)", || {
                let call = PerItem { out: out_o.as_mut_ptr() };
                let mut f = std::ptr::null_mut();
                unsafe {
                    assert_eq!(sys::psh_functor_sequence(&mut f, input.as_ptr() as *const c_void, n, 8), 0);
                    let rc = sys::psh_map(ctx.as_raw(), Some(per_item_kernel), &call as *const _ as *mut c_void, f);
                    sys::psh_functor_destroy(f);
                    assert_eq!(rc, 0);
                }
            }),
            variant("rayon par_iter_mut().zip()", || {
                pool.install(|| out_r.par_iter_mut().zip(input.par_iter()).for_each(|(o, x)| *o = fine(*x)))
            }),
        ];
        rounds(&mut vs, r);
        report("fine: out[i] = (in[i]*1.5+2)*0.5-1, f64", &vs, "rayon par_iter_mut().zip()", n);
    }
    check(&out_p);
    check(&out_b);
    check(&out_o);
    check(&out_r);

    // ---- collect: the results as a Vec<f64> in item order (a new Vec per round)
    {
        let mut got_p = Vec::new();
        let mut got_d = Vec::new();
        let mut got_r = Vec::new();
        let dynamic = MapOptions::new().schedule(Schedule::Dynamic);
        let mut vs = vec![
            variant("pasha map_collect (slice source)", || {
                got_p = ctx.map_collect(&input[..], |_w, _i, x| Ok::<_, Infallible>(fine(*x))).unwrap();
            }),
            variant("pasha map_collect, dynamic (per map)", || {
                got_d = ctx.map_collect_with(dynamic, &input[..], |_w, _i, x| Ok::<_, Infallible>(fine(*x))).unwrap();
            }),
            variant("rayon par_iter().map().collect()", || {
                got_r = pool.install(|| input.par_iter().map(|x| fine(*x)).collect::<Vec<f64>>());
            }),
        ];
        rounds(&mut vs, r);
        report("collect: Vec of (in[i]*1.5+2)*0.5-1, f64", &vs, "rayon par_iter().map().collect()", n);
        drop(vs);
        check(&got_p);
        check(&got_d);
        check(&got_r);
    }

    // ---- fold / reduce: (sum, sum of squares) and a plain sum
    {
        let (mut fp, mut fd, mut fr, mut rp, mut rr) = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), 0.0, 0.0);
        let add = |a: (f64, f64), b: (f64, f64)| (a.0 + b.0, a.1 + b.1);
        let mut vs = vec![
            variant("pasha fold (sum, sum of squares)", || {
                fp = ctx
                    .fold(&input[..], || (0.0, 0.0), |(s, q), _w, _i, x| Ok::<_, Infallible>((s + x, q + x * x)), add)
                    .unwrap();
            }),
            // The dynamic schedule: a worker that wakes late takes fewer
            // chunks, as rayon's stealing balances.
            variant("pasha fold, dynamic (per map)", || {
                fd = ctx
                    .fold_with(
                        MapOptions::new().schedule(Schedule::Dynamic),
                        &input[..],
                        || (0.0, 0.0),
                        |(s, q), _w, _i, x| Ok::<_, Infallible>((s + x, q + x * x)),
                        add,
                    )
                    .unwrap();
            }),
            variant("rayon fold().reduce() (sum, sum of squares)", || {
                fr = pool.install(|| {
                    input.par_iter().fold(|| (0.0, 0.0), |(s, q), x| (s + x, q + x * x)).reduce(|| (0.0, 0.0), add)
                });
            }),
            variant("pasha reduce (sum of fine(x))", || {
                rp = ctx.reduce(&input[..], 0.0, |_w, _i, x| Ok::<_, Infallible>(fine(*x)), |a, b| a + b).unwrap();
            }),
            variant("rayon map().reduce() (sum of fine(x))", || {
                rr = pool.install(|| input.par_iter().map(|x| fine(*x)).reduce(|| 0.0, |a, b| a + b));
            }),
        ];
        rounds(&mut vs, r);
        report("fold: (sum, sum of squares) of in[i]; reduce: sum of fine(in[i])", &vs, "rayon fold().reduce() (sum, sum of squares)", n);
        let r2 = vs.iter().position(|v| v.name.starts_with("rayon map().reduce()")).unwrap();
        report("reduce against its own rayon row", &vs[3..=r2], "rayon map().reduce() (sum of fine(x))", n);
        drop(vs);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        let s: f64 = input.iter().sum();
        let q: f64 = input.iter().map(|x| x * x).sum();
        let f: f64 = input.iter().map(|x| fine(*x)).sum();
        assert!(close(fp.0, s) && close(fp.1, q) && close(fd.0, s) && close(fd.1, q), "a wrong fold");
        assert!(close(fr.0, s) && close(fr.1, q), "a wrong rayon fold");
        assert!(close(rp, f) && close(rr, f), "a wrong reduce");
    }

    // ---- imbalanced: item i costs ~i
    let mut o_static = ctx.alloc::<f64>(&[imb])?;
    let mut o_dyn = ctx.alloc::<f64>(&[imb])?;
    let mut o_guided = ctx.alloc::<f64>(&[imb])?;
    let mut o_dctx = ctx.alloc::<f64>(&[imb])?;
    let mut o_ray = vec![0.0f64; imb];
    let dctx = Context::builder(Kind::Threads).workers(WORKERS).schedule(Schedule::Dynamic).build()?;
    {
        let m = |c: &Context, opts: MapOptions, out: &mut pasha::SharedArray<f64>| {
            c.map_into_with(opts, 0..imb, out, |_w, _i, v, o| {
                *o = costly(black_box(v));
                ok()
            })
            .unwrap()
        };
        let mut vs = vec![
            variant("pasha map_into, static", || m(&ctx, MapOptions::new(), &mut o_static)),
            variant("pasha map_into, dynamic (per map)", || m(&ctx, MapOptions::new().schedule(Schedule::Dynamic), &mut o_dyn)),
            variant("pasha map_into, guided (per map)", || m(&ctx, MapOptions::new().schedule(Schedule::Guided), &mut o_guided)),
            variant("pasha map_into, dynamic context", || m(&dctx, MapOptions::new(), &mut o_dctx)),
            variant("rayon par_iter_mut().enumerate()", || {
                pool.install(|| o_ray.par_iter_mut().enumerate().for_each(|(i, o)| *o = costly(black_box(i))))
            }),
        ];
        rounds(&mut vs, r);
        report("imbalanced: item i costs ~i steps", &vs, "rayon par_iter_mut().enumerate()", imb);
    }
    for o in [&o_static[..], &o_dyn[..], &o_guided[..], &o_dctx[..], &o_ray[..]] {
        assert!(o.iter().enumerate().all(|(i, x)| *x == costly(i)), "a wrong result");
    }
    Ok(())
}
