//! The quick guide in Rust: squares of 0..n on every kind of context, then
//! per-worker partial sums.
use pasha::{Context, Kind};
use std::convert::Infallible;

fn main() -> Result<(), pasha::Error> {
    let n = 1_000_000;
    for kind in [Kind::Serial, Kind::Threads, Kind::Processes] {
        let ctx = Context::new(kind, 4)?;
        // Results go into shared memory that every worker writes directly.
        let mut squares = ctx.alloc::<f64>(&[n])?;
        ctx.map_into(0..n, &mut squares, |_worker, _index, value, out| {
            *out = (value as f64).powi(2);
            Ok::<(), Infallible>(())
        })?;
        // One row per worker: no two workers ever write the same row.
        let mut partial = ctx.alloc_per_worker::<f64>(&[1])?;
        ctx.map_per_worker(&squares[..], &mut partial, |_worker, _index, x, row| {
            row[0] += *x;
            Ok::<(), Infallible>(())
        })?;
        let total: f64 = partial.iter().sum();
        println!("{kind:?} with {} workers: sum of squares = {total}", ctx.num_workers());
    }
    Ok(())
}
