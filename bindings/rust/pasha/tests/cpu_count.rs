//! `pasha::cpu_count()` (psh_cpu_count): its own test binary, because it
//! sets PASHA_NUM_WORKERS, which every context made with 0 workers reads.
use pasha::{Context, ErrorKind, Kind};

#[test]
fn cpu_count_follows_pasha_num_workers_and_rejects_bad_values() {
    std::env::remove_var("PASHA_NUM_WORKERS");
    let n = pasha::cpu_count().unwrap();
    let affinity = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    assert!(n >= 1 && n <= affinity, "cpu_count {n}, available_parallelism {affinity}");
    assert_eq!(Context::new(Kind::Threads, 0).unwrap().num_workers(), n);

    std::env::set_var("PASHA_NUM_WORKERS", "3");
    assert_eq!(pasha::cpu_count().unwrap(), 3);
    assert_eq!(Context::new(Kind::Processes, 0).unwrap().num_workers(), 3);

    std::env::set_var("PASHA_NUM_WORKERS", "three");
    let err = pasha::cpu_count().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.message().contains("PASHA_NUM_WORKERS"), "{err}");
    std::env::remove_var("PASHA_NUM_WORKERS");
}
