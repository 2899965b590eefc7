// HSMSIM_CHECK: invariants of our own code. A failure is a bug in hsmsim, not
// bad input: it prints the condition and aborts, in every build type. Input
// from outside is answered with a Status, never with a CHECK.
#ifndef HSMSIM_COMMON_CHECK_H_
#define HSMSIM_COMMON_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define HSMSIM_CHECK(cond)                                                          \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

#endif  // HSMSIM_COMMON_CHECK_H_
