//! The quick guide of the original pasha, in Rust (as examples/quickguide.c):
//! allocate an output like the input, map "triple it" over the input, check
//! the result; in each context kind. Then per-worker partial sums.
//!
//!     PKG_CONFIG_PATH=<build>/meson-uninstalled cargo run --example quickguide
use pasha::{Context, Kind};
use std::convert::Infallible;

fn main() -> Result<(), pasha::Error> {
    println!("libpasha {}", pasha::version());
    for kind in [Kind::Serial, Kind::Threads, Kind::Processes] {
        let ctx = Context::new(kind, 0)?;
        // The input, in shared memory too; any deterministic numbers do.
        let mut inp = ctx.alloc::<f64>(&[100])?;
        for (i, x) in inp.iter_mut().enumerate() {
            *x = ((i * 7919) % 1000) as f64 / 1000.0;
        }
        let mut outp = ctx.alloc::<f64>(inp.shape())?;
        // The kernel: called once per element, in whichever worker gets it;
        // `value` is a 0-d view of inp[index], `out` is &mut outp[index].
        ctx.map_into(inp.along(0)?, &mut outp, |_worker, _index, value, out| {
            *out = 3.0 * value.get(&[]).unwrap_or(f64::NAN);
            Ok::<(), Infallible>(())
        })?;
        let ok = outp.iter().zip(inp.iter()).all(|(o, i)| (o - 3.0 * i).abs() < 1e-12);
        println!("{:<9} {:2} workers: {}", format!("{kind:?}"), ctx.num_workers(), if ok { "True (outp == 3 * inp)" } else { "False" });

        // One row per worker: no two workers ever write the same row.
        let mut partial = ctx.alloc_per_worker::<f64>(&[1])?;
        ctx.map_per_worker(&outp[..], &mut partial, |_worker, _index, x, row| {
            row[0] += *x;
            Ok::<(), Infallible>(())
        })?;
        let total: f64 = partial.iter().sum();
        let expect: f64 = inp.iter().map(|x| 3.0 * x).sum();
        println!("          sum of outp = {total:.6} (expected {expect:.6})");
        if !ok || (total - expect).abs() > 1e-9 {
            std::process::exit(1);
        }
    }
    Ok(())
}
