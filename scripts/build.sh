# build.sh — sourced by the entry scripts (main-job.sh, run-tests.sh,
# results.sh): installs missing Debian packages and builds into $build
# (set before sourcing), reconfiguring an existing build directory.
sh scripts/install-deps.sh
if [ -f "$build/build.ninja" ]; then
    meson setup --reconfigure "$build" >/dev/null
else
    meson setup "$build" >/dev/null
fi
ninja -C "$build"
