//! Nothing outside the root is ever served, on every variant: `..` in every spelling
//! (plain, percent-encoded, with an encoded `/`, in an absolute-form target) is refused,
//! `//etc/passwd` is a path beneath the root, and symbolic links that lead out of the
//! root, to a file or through a directory, are refused; a link that stays inside works.

mod common;

use std::os::unix::fs::symlink;

use common::{get, lossy, Client, Server, TempDir};

const SECRET: &[u8] = b"TOP SECRET: outside the root\n";
const INSIDE: &[u8] = b"inside the root, reached through a link\n";

/// `base/root` (served), with `base/secret` and `base/outside/secret.txt` next to it.
fn layout(base: &TempDir) -> std::path::PathBuf {
    base.write("secret", SECRET);
    base.write("outside/secret.txt", SECRET);
    base.write("root/index.html", b"<p>root</p>\n");
    base.write("root/sub/inside.txt", INSIDE);
    let root = base.path().join("root");
    let link = |target: &str, name: &str| {
        symlink(target, root.join(name)).unwrap_or_else(|e| panic!("symlink {name} -> {target}: {e}"))
    };
    link("../outside/secret.txt", "link");
    link("../outside", "dlink");
    link("/etc/passwd", "abslink");
    link("sub/inside.txt", "inlink");
    link("sub", "indir");
    root
}

fn escapes_above_the_root_are_refused(variant: &str) {
    let base = TempDir::new("traversal");
    let root = layout(&base);
    let passwd = std::fs::read("/etc/passwd").unwrap_or_default();
    let server = Server::start(variant, &root, &[]);
    let cases: &[(&str, u16)] = &[
        ("/../secret", 403),
        ("//etc/passwd", 404), // beneath the root, where there is no etc/passwd
        ("/%2Fetc/passwd", 404),
        ("/%2e%2e/secret", 403),
        ("/%2E%2E%2Fsecret", 403),
        ("/a/../../secret", 403),
        ("/.%2e/secret", 403),
        ("/..%2fsecret", 403),
        ("/sub/../../secret", 403),
        ("//../secret", 403),
        ("http://kweb-test/../secret", 403),
        ("/link", 403),
        ("/dlink/secret.txt", 403),
        ("/abslink", 403),
    ];
    for &(path, status) in cases {
        let r = get(server.port(), path);
        assert_eq!(r.status, status, "GET {path}: {}", lossy(&r.body));
        assert!(common::find(&r.body, SECRET).is_none(), "GET {path} served the secret");
        if passwd.len() > 16 {
            assert!(common::find(&r.body, &passwd[..16]).is_none(), "GET {path} served /etc/passwd");
        }
    }
    // The refusals above closed nothing and broke nothing.
    assert_eq!(get(server.port(), "/").status, 200);
    server.stop();
}
variant_tests!(escapes_above_the_root_are_refused, 20);

fn symbolic_links_inside_the_root_are_followed(variant: &str) {
    let base = TempDir::new("symlink-in");
    let root = layout(&base);
    let server = Server::start(variant, &root, &[]);
    let mut c = Client::connect(server.port());
    for path in ["/inlink", "/indir/inside.txt", "/sub/../inlink"] {
        c.send(common::get_request(path));
        let r = c.response();
        assert_eq!(r.status, 200, "GET {path}: {}", lossy(&r.body));
        assert_eq!(r.body, INSIDE, "GET {path}");
    }
    server.stop();
}
variant_tests!(symbolic_links_inside_the_root_are_followed, 20);
