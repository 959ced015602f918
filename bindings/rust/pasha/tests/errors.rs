//! The fields of `pasha::Error`, filled from `psh_last_error_info` (never
//! parsed from the message), for real failures in every kind.
use pasha::{Context, ErrorKind, Kind};
use std::convert::Infallible;

const KINDS: [Kind; 3] = [Kind::Serial, Kind::Threads, Kind::Processes];

#[test]
fn closure_err_names_its_worker_and_exact_index() {
    for kind in KINDS {
        let ctx = Context::new(kind, 3).unwrap();
        let nw = ctx.num_workers();
        // Static schedule: worker w has [w*600/nw, (w+1)*600/nw).
        let err = ctx.map(0..600, |_w, i, _v| if i == 421 { Err("no 421") } else { Ok(()) }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel);
        assert_eq!(err.index(), Some(421), "{kind:?}: {err}");
        assert_eq!(err.worker_id(), Some(421 * nw / 600), "{kind:?}: {err}");
        assert_eq!(err.callback(), Some("block_kernel"), "{kind:?}");
        assert_eq!((err.signal(), err.exit_status()), (None, None), "{kind:?}");
        // The same through map_collect and reduce.
        let err = ctx.map_collect(0..600, |_w, i, _v| if i == 77 { Err("no 77") } else { Ok(i) }).unwrap_err();
        assert_eq!((err.index(), err.worker_id()), (Some(77), Some(0)), "{kind:?}: {err}");
        let err = ctx.reduce(0..600, 0, |_w, i, _v| if i == 599 { Err("no 599") } else { Ok(i) }, |a, b| a + b).unwrap_err();
        assert_eq!((err.index(), err.worker_id()), (Some(599), Some(nw - 1)), "{kind:?}: {err}");
    }
}

#[test]
fn panic_names_its_worker_and_chunk_start() {
    for kind in KINDS {
        let ctx = Context::new(kind, 2).unwrap();
        let nw = ctx.num_workers();
        let err = ctx
            .map(0..100, |_w, i, _v| {
                if i == 73 {
                    panic!("seventy-three");
                }
                Ok::<(), Infallible>(())
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}");
        let w = 73 * nw / 100;
        assert_eq!(err.worker_id(), Some(w), "{kind:?}: {err}");
        assert_eq!(err.index(), Some(w * 100 / nw), "{kind:?}: the chunk's start: {err}");
        assert!(err.message().contains("seventy-three"), "{kind:?}: {err}");
    }
}

#[test]
fn dead_worker_process_reports_signal_or_exit_status() {
    let ctx = Context::new(Kind::Processes, 2).unwrap();
    let err = ctx
        .map(0..10, |_w, i, _v| {
            if i == 7 {
                std::process::abort();
            }
            Ok::<(), Infallible>(())
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Worker, "{err}");
    assert_eq!(err.worker_id(), Some(1), "{err}");
    assert_eq!(err.signal(), Some(6), "SIGABRT: {err}");
    assert_eq!(err.exit_status(), None, "{err}");
    let err = ctx
        .map(0..10, |_w, i, _v| {
            if i == 2 {
                std::process::exit(3);
            }
            Ok::<(), Infallible>(())
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Worker, "{err}");
    assert_eq!(err.worker_id(), Some(0), "{err}");
    assert_eq!((err.signal(), err.exit_status()), (None, Some(3)), "{err}");
}

#[test]
fn invalid_argument_has_no_worker_or_index() {
    let ctx = Context::new(Kind::Serial, 1).unwrap();
    let mut out = ctx.alloc::<f64>(&[3]).unwrap();
    let err = ctx.map_into(0..4, &mut out, |_w, _i, _v, _s| Ok::<(), Infallible>(())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!((err.worker_id(), err.index(), err.callback()), (None, None, None));
    // One from the C library: 40 dimensions.
    let err = ctx.alloc::<u8>(&[1; 40]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("ndim"), "{err}");
    assert_eq!((err.worker_id(), err.index(), err.signal(), err.exit_status()), (None, None, None, None));
}
