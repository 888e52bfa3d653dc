//! The caller's view of `O_NONBLOCK` (`raw.rs`: `fcntl`, `ioctl`, `dup`, `dup3`; the
//! crate docs: "other descriptors get `O_NONBLOCK` once, remembered as ours, and hidden
//! from the program's `fcntl(F_GETFL)`"). Rust's std reaches these through the libc names
//! (`set_nonblocking` is `ioctl(FIONBIO)`, `try_clone` is `fcntl(F_DUPFD_CLOEXEC)`), so
//! every call here goes through the libc names too, which this process binds to the
//! layer's wrappers:
//!
//! * on a pipe the layer made non-blocking, `fcntl(F_GETFL)` does not show `O_NONBLOCK`;
//!   the kernel's flags (`support::fd_flags`, a raw `F_GETFL`) do;
//! * setting `O_NONBLOCK` (`F_SETFL`, `FIONBIO`) hands the flag to the caller: a read of
//!   the empty pipe gives `EAGAIN`, on a uthread and on a plain thread;
//! * clearing it makes reads block again: a uthread's blocks only that uthread (another
//!   uthread on the same single vcore keeps running), a plain thread's blocks the thread;
//!   clearing a flag the caller never set (the usual `F_SETFL` of what `F_GETFL` showed)
//!   keeps the layer's flag and the blocking behaviour;
//! * a duplicate (`dup`, `dup2`, `dup3`, `F_DUPFD_CLOEXEC`) blocks like the original.
//!
//! Every check that a call returns at once has a plain "rescuer" thread that writes a
//! byte after a while, so a call that waits instead (or blocks the only vcore in the
//! kernel) ends, and the check fails with what happened rather than at the watchdog.
//!
//! How the tests were checked against the wrappers (in a copy of the workspace, one
//! change at a time, each test run with the change and seen to fail, then the copy
//! restored):
//!
//! * `raw::fcntl` without the `F_GETFL` arm (the kernel's flags shown as they are): the
//!   `F_GETFL` test fails;
//! * `raw::fcntl` without the `F_SETFL` call of `fdkind::user_sets_nonblock` (the flag
//!   passed on as the caller gave it, the cache left alone): the `F_SETFL` set, clear and
//!   keep tests fail (the reads wait instead of `EAGAIN`; a cleared layer flag makes the
//!   uthread's read block its vcore in the kernel);
//! * `raw::ioctl` without its `FIONBIO` branch: the `FIONBIO` tests fail likewise;
//! * `raw::dup`, `raw::dup3` and `raw::fcntl`'s `F_DUPFD` arm without `fdkind::copy`, each
//!   left out alone: the duplicate test fails for each of `dup`, `dup2` (which shares
//!   `raw::dup3`'s copy), `dup3` and `F_DUPFD_CLOEXEC` (the duplicate looks like the
//!   user's non-blocking descriptor: `EAGAIN`, and `F_GETFL` shows the flag).
//!
//! The flag is a property of the open file description, which a duplicate shares: the
//! last two tests check that a change made through one number holds for the other. Both
//! failed while the layer remembered the flag per descriptor number alone (before
//! `fdkind`'s dup groups).

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parlib_syscalls::io;
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{ONE_VCORE, TIMEOUT};

/// How long the data source waits after a plain thread announced its read, so that the
/// read is (almost surely) waiting when the data comes. Only makes the test sharper.
const LATE: Duration = Duration::from_millis(100);
/// How long a read that must return at once (`EAGAIN`) may take before the rescuer gives
/// it a byte to end a wait.
const GRACE: Duration = Duration::from_secs(1);
/// How long a read that must block only its uthread may keep its vcore before the rescuer
/// writes: a read that blocks the vcore in the kernel would hang the test otherwise.
const RESCUE_AFTER: Duration = Duration::from_secs(5);
/// Yields the counter uthread makes, on the reader's vcore, while the reader waits.
const SPINS: u64 = 1000;

// ---------------------------------------------------------------------------------------
// Helpers.

/// One `read(2)` of one byte through the libc name: `Ok(bytes)` or `Err(errno)`.
fn read1(fd: i32) -> Result<usize, i32> {
    let mut b = [0u8; 1];
    // SAFETY: a one-byte read into a valid buffer.
    let r = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
    if r < 0 {
        Err(support::errno())
    } else {
        Ok(r as usize)
    }
}

/// One byte into `fd` through the libc name, which must succeed.
fn write1(fd: i32) {
    // SAFETY: a one-byte write from a valid buffer.
    let r = unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
    assert_eq!(r, 1, "write to fd {fd}: {}", std::io::Error::last_os_error());
}

/// `fcntl(fd, F_SETFL, flags)` through the libc name, which must succeed.
fn set_fl(fd: i32, flags: i32) {
    // SAFETY: F_SETFL takes an integer.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    assert_eq!(r, 0, "fcntl(F_SETFL) of fd {fd}: {}", std::io::Error::last_os_error());
}

/// `ioctl(fd, FIONBIO, &on)` through the libc name, which must succeed.
fn fionbio(fd: i32, on: bool) {
    let v = libc::c_int::from(on);
    // SAFETY: FIONBIO takes a pointer to an int, valid for the call.
    let r = unsafe { libc::ioctl(fd, libc::FIONBIO, &v as *const libc::c_int) };
    assert_eq!(r, 0, "ioctl(FIONBIO) of fd {fd}: {}", std::io::Error::last_os_error());
}

/// Whether `flags` has `O_NONBLOCK`.
fn nb(flags: i32) -> bool {
    flags & libc::O_NONBLOCK != 0
}

/// A pipe whose ends the layer made non-blocking: a uthread's read of it had to wait
/// (the other end is then written by a uthread too). Returns `[read end, write end]`.
fn layer_nonblocking_pipe() -> [i32; 2] {
    static DONE: AtomicBool = AtomicBool::new(false);
    DONE.store(false, Ordering::Relaxed);
    let [r, w] = support::pipe();
    support::spawn(TlsMode::Backed, move || {
        assert_eq!(read1(r), Ok(1), "the first read of the pipe");
        DONE.store(true, Ordering::Release);
    });
    // One vcore, FIFO: the reader runs now and finds the pipe empty.
    common::yield_now();
    write1(w);
    common::wait_until(|| DONE.load(Ordering::Acquire));
    for fd in [r, w] {
        assert!(nb(support::fd_flags(fd)), "precondition: the layer made pipe end {fd} non-blocking");
    }
    [r, w]
}

/// A plain thread that writes one byte to `w` (a raw system call) if it is not told to
/// stand down within `after`: it ends a read that waits when it should not, or that
/// blocks the only vcore in the kernel.
struct Rescuer {
    stand_down: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<bool>,
}

impl Rescuer {
    fn start(w: i32, after: Duration) -> Rescuer {
        let stand_down = Arc::new(AtomicBool::new(false));
        let sd = stand_down.clone();
        let thread = support::plain_thread(move || {
            let t0 = Instant::now();
            while !sd.load(Ordering::Acquire) {
                if t0.elapsed() >= after {
                    // SAFETY: a one-byte write from a static buffer.
                    let r = unsafe { libc::syscall(libc::SYS_write, w, b"r".as_ptr(), 1) };
                    assert_eq!(r, 1, "the rescuer's write");
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        });
        Rescuer { stand_down, thread }
    }

    /// Stands the rescuer down; returns whether it had to write.
    fn finish(self) -> bool {
        self.stand_down.store(true, Ordering::Release);
        common::wait_until(|| self.thread.is_finished());
        self.thread.join().expect("the rescuer failed (message above)")
    }
}

/// Packs a read's result into an `i64` (`-errno` for an error).
fn pack(r: Result<usize, i32>) -> i64 {
    match r {
        Ok(n) => n as i64,
        Err(e) => -i64::from(e),
    }
}

fn unpack(v: i64) -> Result<usize, i32> {
    if v < 0 {
        Err(-v as i32)
    } else {
        Ok(v as usize)
    }
}

/// A uthread's read of the empty pipe `r` returns `EAGAIN`, at once (`Err` says what it
/// did instead).
fn uthread_read_gives_eagain(r: i32, w: i32, what: &str) -> Result<(), String> {
    static RESULT: AtomicI64 = AtomicI64::new(0);
    static DONE: AtomicBool = AtomicBool::new(false);
    DONE.store(false, Ordering::Relaxed);
    let rescuer = Rescuer::start(w, GRACE);
    support::spawn(TlsMode::Backed, move || {
        RESULT.store(pack(read1(r)), Ordering::Relaxed);
        DONE.store(true, Ordering::Release);
    });
    common::wait_until(|| DONE.load(Ordering::Acquire));
    let rescued = rescuer.finish();
    let got = unpack(RESULT.load(Ordering::Relaxed));
    check_eagain(got, rescued, &format!("{what}: a uthread's read of the empty pipe"))
}

/// A plain thread's read of the empty pipe `r` returns `EAGAIN`, at once (`Err` says
/// what it did instead).
fn plain_read_gives_eagain(r: i32, w: i32, what: &str) -> Result<(), String> {
    let rescuer = Rescuer::start(w, GRACE);
    let t = support::plain_thread(move || read1(r));
    common::wait_until(|| t.is_finished());
    let got = t.join().expect("the plain reader failed");
    let rescued = rescuer.finish();
    check_eagain(got, rescued, &format!("{what}: a plain thread's read of the empty pipe"))
}

/// `Err` with a message unless a read that must give `EAGAIN` did.
fn check_eagain(got: Result<usize, i32>, rescued: bool, what: &str) -> Result<(), String> {
    match got {
        Err(libc::EAGAIN) => Ok(()),
        _ if rescued => {
            Err(format!("{what} waited (until the rescuer's byte: {got:?}) instead of giving EAGAIN"))
        }
        _ => Err(format!("{what} gave {got:?}, not EAGAIN")),
    }
}

/// On a single vcore, a uthread's read of the empty pipe `r` waits, and only the uthread
/// waits: a counter uthread on the same vcore makes `SPINS` yields meanwhile, then writes
/// the byte the read returns.
fn uthread_read_blocks_only_itself(r: i32, w: i32, what: &str) {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static COUNT_AT_RETURN: AtomicU64 = AtomicU64::new(0);
    static RESULT: AtomicI64 = AtomicI64::new(0);
    assert_eq!(parlib_vcore::max_vcores(), 1, "this check needs a single vcore");
    COUNT.store(0, Ordering::Relaxed);
    let rescuer = Rescuer::start(w, RESCUE_AFTER);
    // FIFO on one vcore: the reader runs first and waits, then the counter.
    support::spawn(TlsMode::Backed, move || {
        let got = read1(r);
        COUNT_AT_RETURN.store(COUNT.load(Ordering::Relaxed), Ordering::Relaxed);
        RESULT.store(pack(got), Ordering::Relaxed);
    });
    support::spawn(TlsMode::Backed, move || {
        while COUNT.load(Ordering::Relaxed) < SPINS {
            COUNT.fetch_add(1, Ordering::Relaxed);
            common::yield_now();
        }
        write1(w);
    });
    common::wait_all();
    let rescued = rescuer.finish();
    assert!(
        !rescued,
        "{what}: a uthread's read of the empty pipe blocked its vcore (the rescuer had to write)"
    );
    assert_eq!(unpack(RESULT.load(Ordering::Relaxed)), Ok(1), "{what}: a uthread's read");
    assert_eq!(
        COUNT_AT_RETURN.load(Ordering::Relaxed),
        SPINS,
        "{what}: the uthread's read returned before the counter, on its vcore, wrote"
    );
}

/// A plain thread's read of the empty pipe `r` waits until a byte is written `LATE`.
fn plain_read_blocks(r: i32, w: i32, what: &str) {
    static CALLING: AtomicBool = AtomicBool::new(false);
    static WRITTEN: AtomicBool = AtomicBool::new(false);
    CALLING.store(false, Ordering::Relaxed);
    WRITTEN.store(false, Ordering::Relaxed);
    let t = support::plain_thread(move || {
        CALLING.store(true, Ordering::Release);
        let got = read1(r);
        (got, WRITTEN.load(Ordering::Acquire))
    });
    common::wait_until(|| CALLING.load(Ordering::Acquire));
    io::nanosleep(LATE).expect("nanosleep");
    WRITTEN.store(true, Ordering::Release);
    write1(w);
    common::wait_until(|| t.is_finished());
    let (got, written) = t.join().expect("the plain reader failed");
    assert_eq!(got, Ok(1), "{what}: a plain thread's read of the empty pipe");
    assert!(written, "{what}: a plain thread's read returned before the byte was written");
}

/// Both kinds of read of the empty pipe `r` block.
fn reads_block(r: i32, w: i32, what: &str) {
    uthread_read_blocks_only_itself(r, w, what);
    plain_read_blocks(r, w, what);
}

/// Both kinds of read of the empty pipe `r` give `EAGAIN`.
fn reads_give_eagain(r: i32, w: i32, what: &str) {
    uthread_read_gives_eagain(r, w, what).unwrap_or_else(|m| panic!("{m}"));
    plain_read_gives_eagain(r, w, what).unwrap_or_else(|m| panic!("{m}"));
}

fn close_all(fds: &[i32]) {
    for &fd in fds {
        support::close(fd);
    }
}

// ---------------------------------------------------------------------------------------
// F_GETFL.

#[test]
fn f_getfl_hides_the_layers_o_nonblock_that_the_raw_flags_show() {
    static SEEN_ON_UTHREAD: [AtomicI64; 2] = [const { AtomicI64::new(-1) }; 2];
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let fds = layer_nonblocking_pipe();
        let seen_on_plain = support::on_plain_thread(move || fds.map(support::fd_flags_seen));
        support::spawn(TlsMode::Backed, move || {
            for (i, fd) in fds.into_iter().enumerate() {
                SEEN_ON_UTHREAD[i].store(i64::from(support::fd_flags_seen(fd)), Ordering::Relaxed);
            }
        });
        common::wait_all();
        for (i, fd) in fds.into_iter().enumerate() {
            let raw = support::fd_flags(fd);
            assert!(nb(raw), "fd {fd}: the kernel's flags have O_NONBLOCK");
            let want = raw & !libc::O_NONBLOCK;
            assert_eq!(support::fd_flags_seen(fd), want, "fd {fd}: F_GETFL on main");
            assert_eq!(seen_on_plain[i], want, "fd {fd}: F_GETFL on a plain thread");
            assert_eq!(
                SEEN_ON_UTHREAD[i].load(Ordering::Relaxed),
                i64::from(want),
                "fd {fd}: F_GETFL on a uthread"
            );
        }
        // Blocking as F_GETFL says: neither kind of read gives EAGAIN.
        reads_block(fds[0], fds[1], "the layer's non-blocking pipe");
        close_all(&fds);
    });
}

// ---------------------------------------------------------------------------------------
// F_SETFL.

#[test]
fn setting_o_nonblock_with_f_setfl_gives_eagain_to_uthreads_and_plain_threads() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = layer_nonblocking_pipe();
        set_fl(r, support::fd_flags_seen(r) | libc::O_NONBLOCK);
        assert!(nb(support::fd_flags_seen(r)), "F_GETFL shows the caller's O_NONBLOCK");
        reads_give_eagain(r, w, "after F_SETFL with O_NONBLOCK");
        close_all(&[r, w]);
    });
}

#[test]
fn clearing_o_nonblock_with_f_setfl_makes_reads_block_again() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = layer_nonblocking_pipe();
        set_fl(r, support::fd_flags_seen(r) | libc::O_NONBLOCK);
        reads_give_eagain(r, w, "after F_SETFL with O_NONBLOCK");
        set_fl(r, support::fd_flags_seen(r) & !libc::O_NONBLOCK);
        assert!(!nb(support::fd_flags_seen(r)), "F_GETFL after clearing O_NONBLOCK");
        reads_block(r, w, "after F_SETFL without O_NONBLOCK");
        // Twice: the first blocking read made the pipe the layer's again.
        reads_block(r, w, "after F_SETFL without O_NONBLOCK, again");
        close_all(&[r, w]);
    });
}

/// `fcntl(F_SETFL, fcntl(F_GETFL) | O_APPEND)`, the usual way to change one flag, leaves
/// `O_NONBLOCK` out (`F_GETFL` hid the layer's): the layer keeps its own, and reads still
/// block only their uthread (had the kernel's flag been cleared under the layer, a
/// uthread's read would block the whole vcore in the kernel).
#[test]
fn an_f_setfl_without_o_nonblock_keeps_the_layers_flag_and_blocking_reads() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = layer_nonblocking_pipe();
        let before = support::fd_flags_seen(w);
        set_fl(w, before | libc::O_APPEND);
        assert_eq!(support::fd_flags_seen(w), before | libc::O_APPEND, "F_GETFL shows the caller's change");
        assert!(nb(support::fd_flags(w)), "the layer's O_NONBLOCK is still set in the kernel");
        set_fl(r, support::fd_flags_seen(r));
        assert!(nb(support::fd_flags(r)), "the layer's O_NONBLOCK is still set in the kernel");
        assert!(!nb(support::fd_flags_seen(r)), "and still hidden");
        reads_block(r, w, "after F_SETFL of F_GETFL's flags");
        close_all(&[r, w]);
    });
}

// ---------------------------------------------------------------------------------------
// ioctl(FIONBIO).

#[test]
fn fionbio_on_gives_eagain_and_fionbio_off_makes_reads_block_again() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = layer_nonblocking_pipe();
        fionbio(r, true);
        assert!(nb(support::fd_flags_seen(r)), "F_GETFL shows the caller's O_NONBLOCK");
        reads_give_eagain(r, w, "after FIONBIO on");
        fionbio(r, false);
        assert!(!nb(support::fd_flags_seen(r)), "F_GETFL after FIONBIO off");
        reads_block(r, w, "after FIONBIO off");
        reads_block(r, w, "after FIONBIO off, again");
        close_all(&[r, w]);
    });
}

/// `FIONBIO` off on a descriptor whose flag is the layer's (std's
/// `set_nonblocking(false)` on a stream that was never non-blocking) keeps the layer's
/// flag: reads still block only their uthread, and a plain thread.
#[test]
fn fionbio_off_keeps_the_layers_flag_and_blocking_reads() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = layer_nonblocking_pipe();
        fionbio(r, false);
        assert!(nb(support::fd_flags(r)), "the layer's O_NONBLOCK is still set in the kernel");
        assert!(!nb(support::fd_flags_seen(r)), "and still hidden");
        reads_block(r, w, "after FIONBIO off of the layer's flag");
        close_all(&[r, w]);
    });
}

// ---------------------------------------------------------------------------------------
// Duplicates.

#[test]
fn duplicates_of_a_layer_non_blocking_pipe_end_block_like_the_original() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = layer_nonblocking_pipe();
        // The libc names, as std and C programs call them (200, 201 and 100 are free:
        // nothing else in this child opens that many descriptors).
        // SAFETY: the duplicating calls take descriptors and integer flags, no pointers.
        let dups: [(&str, i32); 4] = unsafe {
            [
                ("dup", libc::dup(r)),
                ("dup2", libc::dup2(r, 200)),
                ("dup3", libc::dup3(r, 201, libc::O_CLOEXEC)),
                ("F_DUPFD_CLOEXEC", libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 100)),
            ]
        };
        for (how, d) in dups {
            assert!(d >= 0, "{how}: {}", std::io::Error::last_os_error());
            assert!(nb(support::fd_flags(d)), "{how}: the duplicate shares the kernel's O_NONBLOCK");
            assert!(
                !nb(support::fd_flags_seen(d)),
                "{how}: F_GETFL of the duplicate shows the layer's O_NONBLOCK"
            );
            plain_read_blocks(d, w, how);
            uthread_read_blocks_only_itself(d, w, how);
            support::close(d);
        }
        // The original is unchanged.
        reads_block(r, w, "the original after its duplicates");
        close_all(&[r, w]);
    });
}

// ---------------------------------------------------------------------------------------
// Duplicates share the flag: it belongs to the open file description.

/// `O_NONBLOCK` is a flag of the open file description, which a duplicate shares: the
/// caller's `F_SETFL` through a duplicate makes the original non-blocking too, as it does
/// without parlib (std: `set_nonblocking(true)` on a `try_clone`). The hand-over holds
/// for the original too: its `F_GETFL` shows the flag, and its reads give `EAGAIN`.
#[test]
fn o_nonblock_set_through_a_duplicate_is_seen_through_the_original() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = layer_nonblocking_pipe();
        // SAFETY: dup takes a descriptor.
        let d = unsafe { libc::dup(r) };
        assert!(d >= 0);
        set_fl(d, support::fd_flags_seen(d) | libc::O_NONBLOCK);
        assert!(nb(support::fd_flags_seen(d)), "F_GETFL of the duplicate");
        reads_give_eagain(d, w, "the duplicate");
        // Every finding about the original, then fail with all of them.
        let what = "the original, after F_SETFL with O_NONBLOCK through a duplicate";
        let mut wrong = Vec::new();
        if !nb(support::fd_flags_seen(r)) {
            wrong.push(format!("{what}: F_GETFL hides the caller's O_NONBLOCK"));
        }
        wrong.extend(uthread_read_gives_eagain(r, w, what).err());
        wrong.extend(plain_read_gives_eagain(r, w, what).err());
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        close_all(&[d, r, w]);
    });
}

/// The converse: the caller made the pipe non-blocking, duplicated it, then made it
/// blocking again through the original. The duplicate is blocking now (one open file
/// description), and its reads wait like the original's: a plain thread's in the kernel,
/// a uthread's without blocking its vcore.
#[test]
fn o_nonblock_cleared_through_the_original_leaves_a_duplicate_blocking_only_its_uthread() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = layer_nonblocking_pipe();
        set_fl(r, support::fd_flags_seen(r) | libc::O_NONBLOCK);
        // SAFETY: dup takes a descriptor.
        let d = unsafe { libc::dup(r) };
        assert!(d >= 0);
        set_fl(r, support::fd_flags_seen(r) & !libc::O_NONBLOCK);
        assert!(!nb(support::fd_flags_seen(d)), "F_GETFL of the duplicate");
        plain_read_blocks(d, w, "the duplicate, after F_SETFL without O_NONBLOCK through the original");
        uthread_read_blocks_only_itself(
            d,
            w,
            "the duplicate, after F_SETFL without O_NONBLOCK through the original",
        );
        close_all(&[d, r, w]);
    });
}
