/* Where `ferry worker` finds the loaders (python/wsgi_loader.py, ruby/rack_loader.rb) and the
 * extension modules (python/_ferry.abi3.so, ruby/ferry_ext.so): one rule for the installed and
 * the built binary (docs/deploying.md, "Installing"). In order:
 *
 *   1. FERRY_LOADERS_DIR / FERRY_EXT_DIR, when set and not empty;
 *   2. relative to the binary's own prefix, when the binary sits in PREFIX/<bindir> and
 *      PREFIX/<datadir>/ferry/loaders exists (an installed ferry, moved anywhere: relocatable):
 *      PREFIX/<datadir>/ferry/loaders and PREFIX/<libdir>/ferry/ext;
 *   3. the source tree and build directory compiled in (a binary run from its build dir).
 *
 * <bindir>, <datadir> and <libdir> are meson's, relative to the prefix, compiled in. */
#ifndef FY_CLI_PATHS_H
#define FY_CLI_PATHS_H

#include <stddef.h>

/* Fills <loaders> and <ext> (each <cap> bytes) by the rules above; <exe> is the binary's path
 * (/proc/self/exe, resolved). Returns which rule gave the loaders: 1, 2 or 3 (the extension
 * directory follows its own rule the same way). */
int fy_paths_find(const char *exe, char *loaders, char *ext, size_t cap);

#endif
