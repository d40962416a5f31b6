dnl SPDX-License-Identifier: MIT
# AX_PTHREAD_SIMPLE: make sure -pthread works and add it to CFLAGS/LIBS.
# (Debian's gcc and glibc only; the autoconf-archive AX_PTHREAD is not a
# dependency we want for that.)
AC_DEFUN([AX_PTHREAD_SIMPLE], [
  AC_MSG_CHECKING([whether $CC accepts -pthread])
  save_CFLAGS="$CFLAGS"; CFLAGS="$CFLAGS -pthread"
  save_LIBS="$LIBS"; LIBS="$LIBS -pthread"
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <pthread.h>]],
      [[pthread_t t; pthread_create(&t, 0, 0, 0);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no]); AC_MSG_ERROR([POSIX threads are required])])
])
