//! A stub server for the load generator's tests: it accepts on 127.0.0.1:0 and hands
//! each connection, with its number, to a thread running the test's own `serve`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A thread-per-connection server; stopped and joined when dropped.
pub struct StubServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<()>>,
}

impl StubServer {
    /// Listens and serves every connection `i` with `serve(stream, i)` on a thread.
    pub fn start(serve: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let serve = Arc::new(serve);
        let acceptor = std::thread::spawn({
            let (stop, accepted) = (stop.clone(), accepted.clone());
            move || {
                for (id, stream) in listener.incoming().enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(s) = stream {
                        let serve = serve.clone();
                        std::thread::spawn(move || serve(s, id));
                    }
                }
            }
        });
        StubServer { addr, stop, accepted, acceptor: Some(acceptor) }
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}
