"""The seccomp filter every job process installs before generated code runs (Linux only).

Built with pyseccomp (ctypes bindings to the distribution's libseccomp) rather than hand-written
BPF: libseccomp resolves syscall numbers per architecture and adds the architecture check that
hand-written filters tend to forget. The filter allows everything CadQuery and OCCT do (threads,
memory, files in the scratch folder) and refuses, with EPERM, what CAD code never needs: new
processes, programs, sockets, tracing, other processes' memory, signals to other processes (also
through F_SETOWN/F_SETSIG and their ioctls), other processes' limits, priority, CPUs and pages,
memory outside the address-space limit (memfd), namespaces, mounts, kernel keyrings, BPF and the
like. It is one layer; the jail is the boundary.
"""

from __future__ import annotations

import errno
import functools
import sys

# Threads are clone() with CLONE_THREAD; anything else (fork, vfork, new namespaces) is refused.
_CLONE_THREAD = 0x00010000

DENIED = (
    "execve", "execveat", "fork", "vfork",
    "socket", "socketpair",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "kill", "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsmount", "fspick", "mount_setattr",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "shmget", "shmat", "msgget", "msgsnd", "semget", "mq_open",
    "mknod", "mknodat", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setgroups", "setfsuid", "setfsgid", "capset",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "sethostname", "setdomainname", "syslog",
    "personality", "uselib", "lookup_dcookie", "name_to_handle_at", "open_by_handle_at",
    # Memory that RLIMIT_AS does not count, and other processes' I/O priority and pages.
    "memfd_create", "memfd_secret", "ioprio_set", "kcmp", "process_madvise", "process_mrelease",
)  # fmt: skip

# Calls allowed only on the calling process itself (first argument 0): another process here is the
# zygote or a sibling, whose limits, priority, CPUs and pages every later job would inherit.
SELF_ONLY = (
    "prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
    "migrate_pages", "move_pages",
)  # fmt: skip
# fcntl/ioctl commands that make the kernel signal a process chosen by the caller (the zygote, say)
# when a file becomes ready: a way around the refused kill().
FCNTL_SIGNAL_COMMANDS = (8, 10, 15)  # F_SETOWN, F_SETSIG, F_SETOWN_EX
IOCTL_SIGNAL_COMMANDS = (0x8901, 0x8902, 0x5410, 0x5412)  # FIOSETOWN, SIOCSPGRP, TIOCSPGRP, TIOCSTI


@functools.cache
def _module():
    if sys.platform != "linux":
        return None
    try:
        import pyseccomp

        pyseccomp.system_arch()  # loads libseccomp.so.2; fails when it is missing
        return pyseccomp
    except (ImportError, OSError, AttributeError, RuntimeError):  # RuntimeError: no libseccomp
        return None


def available() -> bool:
    return _module() is not None


def install(own_pid: int) -> bool:
    """Load the filter into this process (and every thread it starts). False when unavailable.

    ``own_pid`` is the only process ``tgkill`` may target, so abort() still works and nothing else
    can be signalled. The filter is permanent: seccomp filters cannot be removed.
    """
    seccomp = _module()
    if seccomp is None:
        return False
    deny = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(deny, name)
        except (OSError, ValueError):
            continue  # not a syscall on this architecture
    rules.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    # clone3 passes its flags in memory a filter cannot read: ENOSYS makes glibc fall back to clone.
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.add_rule(deny, "tgkill", seccomp.Arg(0, seccomp.NE, own_pid))
    for name in SELF_ONLY:
        rules.add_rule(deny, name, seccomp.Arg(0, seccomp.NE, 0))
    # setpriority(PRIO_PROCESS, 0, n) only: PRIO_PGRP or PRIO_USER with who=0 reach the zygote too.
    rules.add_rule(deny, "setpriority", seccomp.Arg(0, seccomp.NE, 0))
    rules.add_rule(deny, "setpriority", seccomp.Arg(1, seccomp.NE, 0))
    # The kernel reads these commands as 32-bit: compare the low 32 bits, so high bits cannot hide one.
    for command in FCNTL_SIGNAL_COMMANDS:
        rules.add_rule(deny, "fcntl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, command))
    for command in IOCTL_SIGNAL_COMMANDS:
        rules.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, command))
    rules.load()
    return True
