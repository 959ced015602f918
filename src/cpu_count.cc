// The default number of workers: the CPUs this process may really use.
// The affinity mask says which CPUs the scheduler may run it on; a cgroup
// CPU quota (cgroup v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us:
// Docker --cpus, Kubernetes limits, systemd CPUQuota) says how much of
// them it gets; Slurm says how many CPUs the task was given. Each one
// alone can be far above the others (a 1-CPU container on a 64-core host).
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "context.hh"
#include "error.hh"

namespace psh {

namespace {

const int kMaxCount = 4096;  // as many workers as a context may have

// A whole number in 1..kMaxCount, or fail naming the variable.
int parse_count_env(const char *name, const char *value)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (*value < '0' || *value > '9' || *end || errno || v < 1 || v > kMaxCount)
        fail(PSH_EINVAL, "%s='%s' is not a whole number in 1..%d", name, value, kMaxCount);
    return (int)v;
}

int affinity_count()
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < INT_MAX ? (int)n : 1;
}

// The first line of a small file, without its newline; false if unreadable.
bool read_line(const std::string &path, char *buf, size_t size)
{
    FILE *f = fopen(path.c_str(), "re");
    if (!f) return false;
    bool ok = fgets(buf, (int)size, f) != nullptr;
    fclose(f);
    if (ok) buf[strcspn(buf, "\n")] = 0;
    return ok;
}

bool read_ll(const std::string &path, long long &v)
{
    char buf[64];
    if (!read_line(path, buf, sizeof buf)) return false;
    char *end;
    errno = 0;
    v = strtoll(buf, &end, 10);
    return end != buf && !errno;
}

// quota / period CPUs, rounded up; INT_MAX for no limit.
int quota_cpus(long long quota, long long period)
{
    if (quota <= 0 || period <= 0) return INT_MAX;
    long long n = (quota + period - 1) / period;
    return n < INT_MAX ? (int)n : INT_MAX;
}

// cgroup v2: "max 100000" or "150000 100000".
int v2_limit(const std::string &dir)
{
    char buf[128];
    if (!read_line(dir + "/cpu.max", buf, sizeof buf)) return INT_MAX;
    long long quota, period;
    if (sscanf(buf, "%lld %lld", &quota, &period) != 2) return INT_MAX;  // "max ...": no quota
    return quota_cpus(quota, period);
}

// cgroup v1: cpu.cfs_quota_us is -1 without a quota.
int v1_limit(const std::string &dir)
{
    long long quota, period;
    if (!read_ll(dir + "/cpu.cfs_quota_us", quota) || !read_ll(dir + "/cpu.cfs_period_us", period)) return INT_MAX;
    return quota_cpus(quota, period);
}

// Does the comma-separated list contain word?
bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0) return true;
        if (!comma) break;
        p = comma + 1;
    }
    return false;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const char *s)
{
    std::string out;
    for (; *s; ++s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
            out += (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            out += *s;
        }
    }
    return out;
}

struct Mount {
    std::string root, point;  // the hierarchy's directory that is mounted, and where
};

// The mount of the cgroup2 hierarchy (v1: false) or of the v1 hierarchy
// with the cpu controller (v1: true).
bool find_mount(bool v1, Mount &m)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return false;
    char *line = nullptr;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        // id parent major:minor root point options [optional...] - fstype source super
        char *fields[32];
        int nf = 0;
        char *save = nullptr;
        for (char *t = strtok_r(line, " \n", &save); t && nf < 32; t = strtok_r(nullptr, " \n", &save))
            fields[nf++] = t;
        int dash = -1;
        for (int i = 6; i < nf; ++i)
            if (strcmp(fields[i], "-") == 0) {
                dash = i;
                break;
            }
        if (dash < 0 || dash + 1 >= nf) continue;
        const char *fstype = fields[dash + 1];
        const char *super = dash + 3 < nf ? fields[dash + 3] : "";
        if (v1 ? strcmp(fstype, "cgroup") == 0 && has_word(super, "cpu") : strcmp(fstype, "cgroup2") == 0) {
            m.root = unescape(fields[3]);
            m.point = unescape(fields[4]);
            found = true;
        }
    }
    free(line);
    fclose(f);
    return found;
}

// This process's cgroup path in the cgroup2 hierarchy (v1: false) or the
// v1 hierarchy with the cpu controller, from /proc/self/cgroup.
bool find_cgroup(bool v1, std::string &path)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return false;
    char *line = nullptr;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = 0;
        // hierarchy-id:controllers:path
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : nullptr;
        if (!c2) continue;
        *c2 = 0;
        const char *controllers = c1 + 1;
        bool match = v1 ? has_word(controllers, "cpu") : strcmp(line, "0") == 0 && !*controllers;
        if (match) {
            path = c2 + 1;
            found = true;
        }
    }
    free(line);
    fclose(f);
    return found;
}

// The smallest quota on the way from this process's cgroup up to the root
// of the hierarchy that is visible here (a parent's limit binds too).
int cgroup_limit(bool v1)
{
    Mount m;
    std::string path;
    if (!find_cgroup(v1, path) || !find_mount(v1, m)) return INT_MAX;
    // The mount shows the hierarchy from m.root down (a container sees its
    // own cgroup as "/"); path is relative to the hierarchy's root.
    std::string rel = path;
    if (m.root != "/" && rel.compare(0, m.root.size(), m.root) == 0 &&
        (rel.size() == m.root.size() || rel[m.root.size()] == '/'))
        rel = rel.substr(m.root.size());
    else if (m.root != "/")
        rel.clear();  // our cgroup is outside the mounted part: only what is visible counts
    std::string dir = m.point + rel;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    int limit = INT_MAX;
    for (;;) {
        int l = v1 ? v1_limit(dir) : v2_limit(dir);
        if (l < limit) limit = l;
        size_t slash = dir.rfind('/');
        if (dir.size() <= m.point.size() || slash == std::string::npos || slash < m.point.size()) break;
        dir.erase(slash);
    }
    return limit;
}

}  // namespace

int default_num_workers()
{
    const char *env = getenv("PASHA_NUM_WORKERS");
    if (env && *env) return parse_count_env("PASHA_NUM_WORKERS", env);
    int n = affinity_count();
    const char *slurm = getenv("SLURM_CPUS_PER_TASK");
    if (slurm && *slurm) {
        int s = parse_count_env("SLURM_CPUS_PER_TASK", slurm);
        if (s < n) n = s;
    }
    int v2 = cgroup_limit(false), v1 = cgroup_limit(true);
    if (v2 < n) n = v2;
    if (v1 < n) n = v1;
    return n < 1 ? 1 : n > kMaxCount ? kMaxCount : n;
}

}  // namespace psh
