/* A container process with CAP_SYS_PTRACE that watches its own /proc for processes that were
 * not there when it started, and attacks each one it sees: PTRACE_SEIZE and
 * process_vm_readv. It reports every sighting on stdout (line-buffered). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned char known[4194304 / 8 + 1];
static int is_known(long pid) { return known[pid / 8] & (1 << (pid % 8)); }
static void mark(long pid) { known[pid / 8] |= (unsigned char)(1 << (pid % 8)); }

static void field(long pid, const char *name, char *out, size_t len) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  out[0] = 0;
  if (!f) return;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, name, strlen(name)) == 0) {
      snprintf(out, len, "%s", line + strlen(name));
      out[strcspn(out, "\n")] = 0;
    }
  fclose(f);
}

static void scan(int report) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  if (!d) return;
  while ((e = readdir(d))) {
    long pid = strtol(e->d_name, NULL, 10);
    if (pid <= 0 || pid > 4194304 || is_known(pid)) continue;
    mark(pid);
    if (!report || pid == getpid()) continue;
    char uid[128], caps[64];
    field(pid, "Uid:", uid, sizeof uid);
    field(pid, "CapEff:", caps, sizeof caps);
    printf("SEEN %ld uid=%s capeff=%s\n", pid, uid, caps);
    long r = ptrace(PTRACE_SEIZE, pid, 0, 0);
    printf("SEIZE %ld %s\n", pid, r == 0 ? "ok" : strerror(errno));
    if (r == 0) {
      /* Let go again (a seized tracee must be stopped to be detached). */
      ptrace(PTRACE_INTERRUPT, pid, 0, 0);
      waitpid(pid, NULL, __WALL);
      ptrace(PTRACE_DETACH, pid, 0, 0);
    }
    char buf[16];
    struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    printf("VM_READV %ld %s\n", pid, n >= 0 ? "ok" : strerror(errno));
  }
  closedir(d);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  scan(0);
  printf("watching\n");
  for (;;) {
    scan(1);
    usleep(100);
  }
}
