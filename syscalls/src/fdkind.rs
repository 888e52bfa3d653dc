//! What each descriptor is, and so how a call on it is kept from blocking the vcore.
//!
//! | kind | how calls avoid blocking | how a would-block is detected |
//! |---|---|---|
//! | socket | `MSG_DONTWAIT` per call; the descriptor's flags stay the user's | `EAGAIN`, unless the user set `O_NONBLOCK` (then `EAGAIN` is theirs) |
//! | pipe, FIFO, tty, eventfd, ... | `O_NONBLOCK` set once by us (remembered, so plain threads still block) | `EAGAIN` |
//! | the user set `O_NONBLOCK` | nothing to do | `EAGAIN` goes back to the user |
//! | a standard stream (0-2) that is a pipe, tty or device | asked first with a zero-timeout `poll`, then the plain call (a write at most `PIPE_BUF` at a time) | `poll` says not ready |
//! | regular file, block device, directory | never blocks on readiness: run on the uthread's backing thread | - |
//!
//! Standard streams are shared with other processes (the shell's terminal, a pipeline's
//! other writers): `O_NONBLOCK` is a flag of the open file description, so setting it
//! here would make *their* reads and writes fail with `EAGAIN`, even after this process
//! exits. So those are never made non-blocking; readiness is asked instead.
//!
//! Kinds are cached per descriptor number and forgotten by the close wrapper; a socket
//! call that finds `ENOTSOCK` reclassifies (a descriptor closed and reused behind our
//! back). What a kind records (chiefly, whose `O_NONBLOCK` it is) belongs to the open
//! file description, which duplicates share (`dup`, `F_DUPFD`, std's `try_clone`): so
//! duplicated numbers form a *dup group*, and a change made through one member is
//! written to every member. Only numbers with duplicates pay for this (a lock, on the
//! rare changes of state); every other lookup stays one atomic load. Descriptors below [`MAX_CACHED_FD`] have a slot in a flat table (one atomic
//! byte each); larger ones (a raised `RLIMIT_NOFILE`, `dup2` to a high number) live in a
//! map under a lock: slower, but remembered the same way, which matters because the
//! flag `O_NONBLOCK` alone cannot tell our non-blocking descriptors from the user's.

use core::sync::atomic::{AtomicU8, Ordering};
use std::collections::HashMap;

use parlib_sync::PdrSpinLock;

use crate::raw::sys;

/// Descriptors below this have their kind in a flat table; larger ones in a map.
pub const MAX_CACHED_FD: usize = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Socket,
    /// A non-socket we made non-blocking ourselves.
    OursNonblock,
    /// The user made it non-blocking: never wait.
    UserNonblock,
    Regular,
    /// A standard stream we must not make non-blocking: ask `poll` before each call.
    Shared,
}

const UNKNOWN: u8 = 0;
const SOCKET: u8 = 1;
const OURS: u8 = 2;
const USER: u8 = 3;
const REGULAR: u8 = 4;
const SHARED: u8 = 5;
/// Flag: the number has duplicates; changes of state go through [`GROUPS`].
const GROUPED: u8 = 0x40;
/// Flag: we set `O_NONBLOCK` on this socket (for `accept` and `connect`).
const SOCKET_NB_OURS: u8 = 0x80;

static KINDS: [AtomicU8; MAX_CACHED_FD] = [const { AtomicU8::new(UNKNOWN) }; MAX_CACHED_FD];
/// Descriptors from `MAX_CACHED_FD` up; absent means `UNKNOWN`. PDR: uthreads use it.
static LARGE: PdrSpinLock<Option<HashMap<i32, u8>>> = PdrSpinLock::new(None);
/// The dup groups. Lock order: `GROUPS` before `LARGE`.
static GROUPS: PdrSpinLock<Option<Groups>> = PdrSpinLock::new(None);

/// Numbers that share one open file description, as far as this layer has seen them
/// made (`dup`, `dup3`, `F_DUPFD`). A group has at least two members; every member's
/// byte carries [`GROUPED`].
#[derive(Default)]
struct Groups {
    group_of: HashMap<i32, u64>,
    members: HashMap<u64, Vec<i32>>,
    next_id: u64,
}

impl Groups {
    /// Takes `fd` out of its group, if any; a group left with one member dissolves.
    fn leave(&mut self, fd: i32) {
        let Some(id) = self.group_of.remove(&fd) else { return };
        let members = self.members.get_mut(&id).expect("a grouped number's group exists");
        members.retain(|&m| m != fd);
        if let [last] = members[..] {
            self.group_of.remove(&last);
            self.members.remove(&id);
            mark_grouped(last, false);
        }
    }

    /// Puts `to` into `from`'s group (made if `from` has none).
    fn join(&mut self, from: i32, to: i32) {
        let id = match self.group_of.get(&from) {
            Some(&id) => id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.group_of.insert(from, id);
                self.members.insert(id, vec![from]);
                mark_grouped(from, true);
                id
            }
        };
        self.group_of.insert(to, id);
        self.members.get_mut(&id).expect("just made or found").push(to);
    }
}

/// The byte for `fd`, flags and all.
fn raw_load(fd: i32) -> u8 {
    match usize::try_from(fd) {
        Ok(i) if i < MAX_CACHED_FD => KINDS[i].load(Ordering::Relaxed),
        Ok(_) => LARGE.lock().as_ref().and_then(|m| m.get(&fd).copied()).unwrap_or(UNKNOWN),
        Err(_) => UNKNOWN,
    }
}

fn raw_store(fd: i32, v: u8) {
    match usize::try_from(fd) {
        Ok(i) if i < MAX_CACHED_FD => KINDS[i].store(v, Ordering::Relaxed),
        Ok(_) => {
            let mut m = LARGE.lock();
            if v == UNKNOWN {
                if let Some(m) = m.as_mut() {
                    m.remove(&fd);
                }
            } else {
                m.get_or_insert_with(HashMap::new).insert(fd, v);
            }
        }
        Err(_) => {}
    }
}

/// What is known of `fd`'s open file description (group membership aside).
fn load(fd: i32) -> u8 {
    raw_load(fd) & !GROUPED
}

/// Records `v` for `fd`'s open file description: for every member of its dup group.
///
/// A number without duplicates is one compare-and-swap, which fails if a `copy` has made
/// it a group member meanwhile (so the change is not lost to the other members, and the
/// member keeps its [`GROUPED`] mark); members, and numbers past the table, go through
/// the group lock.
fn store(fd: i32, v: u8) {
    if let Some(cell) = usize::try_from(fd).ok().and_then(|i| KINDS.get(i)) {
        let mut cur = cell.load(Ordering::Relaxed);
        while cur & GROUPED == 0 {
            match cell.compare_exchange_weak(cur, v, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
    let g = GROUPS.lock();
    match g.as_ref().and_then(|g| g.members.get(g.group_of.get(&fd)?)) {
        Some(members) => members.iter().for_each(|&m| raw_store(m, v | GROUPED)),
        None => raw_store(fd, v),
    }
}

/// Sets or clears `fd`'s [`GROUPED`] mark, keeping the rest of its byte. Called under the
/// group lock; atomic against a lock-free [`store`] on the same number.
fn mark_grouped(fd: i32, on: bool) {
    match usize::try_from(fd).ok().and_then(|i| KINDS.get(i)) {
        Some(cell) if on => {
            cell.fetch_or(GROUPED, Ordering::Relaxed);
        }
        Some(cell) => {
            cell.fetch_and(!GROUPED, Ordering::Relaxed);
        }
        None => {
            let v = raw_load(fd);
            raw_store(fd, if on { v | GROUPED } else { v & !GROUPED });
        }
    }
}

/// Records `v` for the number `fd` alone: it is closed, or names a new open file
/// description (made by `socket`, `accept`, `open`, or reused behind our back).
fn renew(fd: i32, v: u8) {
    if raw_load(fd) & GROUPED != 0 {
        if let Some(g) = GROUPS.lock().as_mut() {
            g.leave(fd);
        }
    }
    raw_store(fd, v);
}

fn decode(v: u8) -> Option<Kind> {
    match v & !SOCKET_NB_OURS {
        SOCKET => Some(Kind::Socket),
        OURS => Some(Kind::OursNonblock),
        USER => Some(Kind::UserNonblock),
        REGULAR => Some(Kind::Regular),
        SHARED => Some(Kind::Shared),
        _ => None,
    }
}

/// Forgets what the number `fd` was (it is being closed, was just opened, or turned out
/// to name another open file description), and takes it out of its dup group.
pub(crate) fn forget(fd: i32) {
    renew(fd, UNKNOWN);
}

/// Records that `fd` is a new socket (we just created or accepted it).
pub(crate) fn note_socket(fd: i32) {
    renew(fd, SOCKET);
}

/// The kind of `fd` if it is already known, without classifying it (plain threads must
/// not change a descriptor's flags by asking).
pub(crate) fn cached(fd: i32) -> Option<Kind> {
    decode(load(fd))
}

/// Whether `O_NONBLOCK` on `fd` is ours (set by this layer, so its callers still expect
/// blocking behaviour), as far as the cache knows. Never classifies.
pub(crate) fn nonblock_is_ours(fd: i32) -> bool {
    let v = load(fd);
    v == OURS || v & SOCKET_NB_OURS != 0
}

/// The kind of `fd`, classifying it on first use. `Err(errno)` for a bad descriptor.
pub(crate) fn kind(fd: i32) -> Result<Kind, i32> {
    if let Some(k) = cached(fd) {
        return Ok(k);
    }
    let k = classify(fd)?;
    store(
        fd,
        match k {
            Kind::Socket => SOCKET,
            Kind::OursNonblock => OURS,
            Kind::UserNonblock => USER,
            Kind::Regular => REGULAR,
            Kind::Shared => SHARED,
        },
    );
    Ok(k)
}

fn classify(fd: i32) -> Result<Kind, i32> {
    // SAFETY: an all-zero stat is valid; raw fstat writes it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    sys(libc::SYS_fstat, [fd as usize, &mut st as *mut libc::stat as usize, 0, 0, 0, 0])?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => Ok(Kind::Socket),
        libc::S_IFREG | libc::S_IFBLK | libc::S_IFDIR => Ok(Kind::Regular),
        _ => {
            let fl = fcntl(fd, libc::F_GETFL, 0)?;
            if fl & libc::O_NONBLOCK != 0 {
                return Ok(Kind::UserNonblock);
            }
            if (0..=2).contains(&fd) {
                return Ok(Kind::Shared); // module docs: never ours to make non-blocking
            }
            set_nonblock(fd, true)?;
            Ok(Kind::OursNonblock)
        }
    }
}

fn fcntl(fd: i32, cmd: i32, arg: i32) -> Result<i32, i32> {
    sys(libc::SYS_fcntl, [fd as usize, cmd as usize, arg as usize, 0, 0, 0]).map(|r| r as i32)
}

/// Sets or clears `O_NONBLOCK` on `fd` and nothing else (`FIONBIO`: unlike `F_SETFL`,
/// it needs no `F_GETFL` first to keep the other flags).
pub(crate) fn set_nonblock(fd: i32, on: bool) -> Result<(), i32> {
    let on = i32::from(on);
    sys(libc::SYS_ioctl, [fd as usize, libc::FIONBIO as usize, &on as *const i32 as usize, 0, 0, 0]).map(drop)
}

/// Whether an `EAGAIN` on `fd` belongs to the user (they asked for non-blocking I/O).
///
/// For a socket whose flags are the user's this asks the kernel (`F_GETFL`): the user
/// may change `O_NONBLOCK` at any time (`fcntl`, `ioctl(FIONBIO)`), and this layer sees
/// neither, so the cache cannot know. It runs only on a would-block, which a wait
/// (epoll, a context switch) follows anyway.
pub(crate) fn user_wants_eagain(fd: i32, k: Kind) -> bool {
    match k {
        Kind::UserNonblock => true,
        Kind::OursNonblock | Kind::Regular | Kind::Shared => false,
        Kind::Socket => {
            if load(fd) & SOCKET_NB_OURS != 0 {
                return false;
            }
            fcntl(fd, libc::F_GETFL, 0).is_ok_and(|fl| fl & libc::O_NONBLOCK != 0)
        }
    }
}

/// The user sets (`on`) or clears `O_NONBLOCK` on `fd` (`F_SETFL`, `FIONBIO`). Returns
/// whether the kernel flag must stay set all the same: it is ours, and the user asks for
/// blocking calls, which this layer makes without blocking a vcore. Setting it hands the
/// flag to the user (their `EAGAIN`s are theirs from then on); clearing their own flag
/// lets the next call classify the descriptor afresh. Either holds for every duplicate.
pub(crate) fn user_sets_nonblock(fd: i32, on: bool) -> bool {
    let v = load(fd);
    let ours = v == OURS || v & SOCKET_NB_OURS != 0;
    match (on, ours) {
        (true, true) => {
            store(fd, if v & !SOCKET_NB_OURS == SOCKET { SOCKET } else { USER });
            false
        }
        (false, true) => true,
        (false, false) if v == USER => {
            store(fd, UNKNOWN); // the whole group classifies afresh
            false
        }
        _ => false,
    }
}

/// `to` was made a duplicate of `from` (`dup`, `dup2`, `F_DUPFD`): it shares the open file
/// description, so its flags, what is known of them, and every change to come.
pub(crate) fn copy(from: i32, to: i32) {
    if from == to {
        return;
    }
    let mut g = GROUPS.lock();
    let g = g.get_or_insert_with(Groups::default);
    g.leave(to);
    g.join(from, to);
    raw_store(to, load(from) | GROUPED);
}

/// Makes a blocking socket non-blocking for calls that have no per-call flag (`accept`,
/// `connect`), remembering that the flag is ours. Returns false if the user had already
/// set it (their `EAGAIN`s are theirs).
pub(crate) fn make_socket_nonblocking(fd: i32) -> Result<bool, i32> {
    if load(fd) & SOCKET_NB_OURS != 0 {
        return Ok(true);
    }
    let fl = fcntl(fd, libc::F_GETFL, 0)?;
    if fl & libc::O_NONBLOCK != 0 {
        return Ok(false);
    }
    set_nonblock(fd, true)?;
    store(fd, SOCKET | SOCKET_NB_OURS);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the cache remembers for a number is the same on both sides of the table's
    /// edge (the map side is what descriptors >= 65536 use), and forgetting clears it.
    #[test]
    fn kinds_above_the_flat_table_are_remembered_like_those_below() {
        for fd in [MAX_CACHED_FD as i32 - 1, MAX_CACHED_FD as i32, 70_000, i32::MAX] {
            assert_eq!(cached(fd), None, "fd {fd} starts unknown");
            store(fd, OURS);
            assert_eq!(cached(fd), Some(Kind::OursNonblock), "fd {fd}");
            assert!(nonblock_is_ours(fd), "fd {fd}");
            store(fd, SOCKET | SOCKET_NB_OURS);
            assert_eq!(cached(fd), Some(Kind::Socket), "fd {fd}");
            assert!(nonblock_is_ours(fd) && !user_wants_eagain(fd, Kind::Socket), "fd {fd}");
            note_socket(fd);
            assert!(!nonblock_is_ours(fd), "fd {fd}: a fresh socket's flags are the user's");
            forget(fd);
            assert_eq!(cached(fd), None, "fd {fd} forgotten");
        }
        assert_eq!(cached(-1), None);
        store(-1, OURS);
        assert_eq!(cached(-1), None, "negative numbers are never cached");
    }

    /// A change made through any member of a dup group is seen through every member; a
    /// member closed (or reused) leaves the group and keeps nothing of it; the last one
    /// left is an ordinary number again. Numbers on both sides of the table's edge.
    #[test]
    fn duplicates_share_every_change_until_closed() {
        let (a, b, c) = (60_001, 80_001, 60_002);
        store(a, OURS);
        copy(a, b);
        copy(b, c);
        assert!([a, b, c].iter().all(|&fd| nonblock_is_ours(fd)), "a duplicate starts with what is known");
        assert!(!user_sets_nonblock(c, true), "the user takes the flag through one duplicate");
        assert!([a, b, c].iter().all(|&fd| cached(fd) == Some(Kind::UserNonblock)), "... for all");
        assert!(!user_sets_nonblock(a, false), "the user clears their flag through another");
        assert!([a, b, c].iter().all(|&fd| cached(fd).is_none()), "all classify afresh");
        forget(b);
        assert_eq!(raw_load(b), UNKNOWN, "a closed member keeps nothing");
        store(a, SOCKET | SOCKET_NB_OURS);
        assert_eq!(cached(b), None, "a closed member sees no later change");
        assert_eq!(cached(c), Some(Kind::Socket), "the others still do");
        note_socket(c);
        assert_eq!(raw_load(a), SOCKET | SOCKET_NB_OURS, "the last member is ungrouped");
        assert_eq!(raw_load(c), SOCKET, "a reused number starts alone");
        {
            let g = GROUPS.lock();
            let g = g.as_ref().expect("groups were made");
            assert!([a, b, c].iter().all(|fd| !g.group_of.contains_key(fd)), "no group is left behind");
        }
        forget(a);
        forget(c);
    }

    /// A change racing a `copy` of the same number is not lost to the duplicate: once
    /// `copy` returns, every change is seen through both numbers (read under the group
    /// lock, so no group write is half done).
    #[test]
    fn a_change_racing_a_copy_reaches_the_duplicate() {
        use std::sync::atomic::{AtomicBool, AtomicU64};
        let (a, b) = (60_010, 60_011);
        let done = AtomicBool::new(false);
        let changes = AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    store(a, if i.is_multiple_of(2) { OURS } else { USER });
                    changes.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
            // Stop the writer even if a check fails, or the scope would wait for it forever.
            let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for round in 0..2_000 {
                    copy(a, b);
                    let seen = changes.load(Ordering::Relaxed);
                    while changes.load(Ordering::Relaxed) < seen + 2 {
                        std::hint::spin_loop();
                    }
                    let g = GROUPS.lock();
                    let (va, vb) = (raw_load(a), raw_load(b));
                    drop(g);
                    assert!(va & GROUPED != 0, "round {round}: the original lost its group mark ({va:#x})");
                    assert_eq!(va, vb, "round {round}: a change through the original missed the duplicate");
                    forget(b);
                }
            }));
            done.store(true, Ordering::Relaxed);
            if let Err(p) = checks {
                std::panic::resume_unwind(p);
            }
        });
        forget(a);
    }

    /// A bad descriptor above the table is the kernel's `EBADF`, and nothing is cached.
    #[test]
    fn classifying_a_closed_high_descriptor_is_ebadf() {
        assert_eq!(kind(90_000), Err(libc::EBADF));
        assert_eq!(cached(90_000), None);
    }
}
