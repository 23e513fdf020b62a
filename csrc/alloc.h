/* alloc.h -- the one door to the heap for every C module of homestream.
 *
 *   library code ──▶ hsMalloc / hsCalloc / hsRealloc / hsFree
 *                        │
 *            normal build│  -DHS_ALLOC_TEST (tests/c)
 *                        ▼              ▼
 *               malloc, calloc,   hsTestMalloc ... defined by the test driver,
 *               realloc, free     which can make the Nth allocation fail
 *
 * Library code never calls malloc directly, so a test can fail any single
 * allocation and check that the structure is still whole and nothing leaks.
 * Every module reports a failed allocation by setting errno = ENOMEM and
 * returning 0 (or NULL) with its structure unchanged.
 */
#ifndef HOMESTREAM_ALLOC_H
#define HOMESTREAM_ALLOC_H

#include <stddef.h>

#ifdef HS_ALLOC_TEST
void *hsTestMalloc(size_t size);
void *hsTestCalloc(size_t count, size_t size);
void *hsTestRealloc(void *ptr, size_t size);
void hsTestFree(void *ptr);
#define hsMalloc hsTestMalloc
#define hsCalloc hsTestCalloc
#define hsRealloc hsTestRealloc
#define hsFree hsTestFree
#else
#include <stdlib.h>
#define hsMalloc malloc
#define hsCalloc calloc
#define hsRealloc realloc
#define hsFree free
#endif

#endif
