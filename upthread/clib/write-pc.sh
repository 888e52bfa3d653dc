#!/bin/sh
# Writes upthread.pc and upthread-static.pc for the libupthread built in a cargo target
# profile directory, so that pkg-config can find it where cargo left it:
#
#     cargo build -p upthread --release
#     upthread/clib/write-pc.sh target/release        # -> target/release/pkgconfig/*.pc
#     export PKG_CONFIG_PATH=$PWD/target/release/pkgconfig
#     cc prog.c $(pkg-config --cflags --libs upthread) -o prog
#
# The test suite runs this script too (upthread/clib/tests/c_programs.rs), so what it
# writes is what every C test program is built with.
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 <cargo target profile directory, e.g. target/release>" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
libdir=$(cd "$1" && pwd)
if [ ! -e "$libdir/libupthread.so" ] || [ ! -e "$libdir/libupthread.a" ]; then
    echo "$0: no libupthread.so and libupthread.a in $libdir (cargo build -p upthread first)" >&2
    exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n 1)
mkdir -p "$libdir/pkgconfig"
for name in upthread upthread-static; do
    sed -e "s|@libdir@|$libdir|g" -e "s|@includedir@|$here/include|g" -e "s|@version@|$version|g" \
        "$here/pkgconfig/$name.pc.in" > "$libdir/pkgconfig/$name.pc"
done
echo "$libdir/pkgconfig"
