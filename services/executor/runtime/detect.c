/* detect.c: what this kernel and cgroup setup allow a sandbox (sbx_sandbox_caps_detect).
 *
 * Job: once per process, runs `sbx-init --probe` (which tries to create every namespace a
 * sandbox gets) and reads the cgroup mounts (sbx_cg_detect), logs the result and keeps it, with
 * the cgroup environment every create and claim uses.
 * Threads: any; the first callers may probe concurrently, the first result is kept.
 * Locks: caps.lock, taken alone. */
#include "sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "log.h"

static struct {
    pthread_mutex_t lock; /* everything below */
    bool done;
    sbx_sandbox_caps caps;
    sbx_cg_env cgenv;
} caps = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Runs `init_path --probe`: 0 with *ok, or -errno when it cannot run at all. */
static int probe_namespaces(const char *init_path, bool *ok)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *argv[] = {(char *)init_path, "--probe", NULL};
    char *envp[] = {NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, init_path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        SBX_LOG_ERRNO(SBX_LOG_ERROR, "sandbox", rc, "cannot run init path=%s", init_path);
        return -rc;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    *ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    return 0;
}

static void log_caps(const sbx_sandbox_caps *c, const sbx_cg_env *env)
{
    SBX_LOG_INFO("sandbox",
                 "isolation detected namespaces=%s cgroup_v2=%s v2_kill=%s v2_ctrl=0x%x "
                 "v1_ctrl=0x%x memory_v1=%s pids_v1=%s cpu_v1=%s v2_dir=%s",
                 c->namespaces ? "yes" : "no", c->cgroup_v2 ? "yes" : "no",
                 c->cgroup_v2_kill ? "yes" : "no", c->v2_controllers, c->v1_controllers,
                 env->v1_own[0][0] ? env->v1_own[0] : "-", env->v1_own[1][0] ? env->v1_own[1] : "-",
                 env->v1_own[2][0] ? env->v1_own[2] : "-", env->v2_own[0] ? env->v2_own : "-");
}

int sbx_sandbox_caps_detect(const char *init_path, sbx_sandbox_caps *out)
{
    pthread_mutex_lock(&caps.lock);
    if (caps.done) {
        *out = caps.caps;
        pthread_mutex_unlock(&caps.lock);
        return 0;
    }
    pthread_mutex_unlock(&caps.lock);
    if (!init_path)
        return -EINVAL;

    sbx_sandbox_caps c;
    memset(&c, 0, sizeof c);
    int rc = probe_namespaces(init_path, &c.namespaces);
    if (rc < 0)
        return rc;
    if (!c.namespaces)
        snprintf(c.namespaces_err, sizeof c.namespaces_err, "sbx-init --probe failed");

    sbx_cg_env env;
    sbx_cg_detect(&env, "sbx");
    c.cgroup_v2 = env.v2_own[0] != '\0';
    c.cgroup_v2_kill = env.v2_kill;
    c.v2_controllers = env.v2_ctrl;
    for (int i = 0; i < SBX_CG_NCTRL; i++)
        if (env.v1_own[i][0])
            c.v1_controllers |= 1u << i;

    pthread_mutex_lock(&caps.lock);
    if (!caps.done) {
        caps.caps = c;
        caps.cgenv = env;
        caps.done = true;
        log_caps(&c, &env);
    }
    *out = caps.caps;
    pthread_mutex_unlock(&caps.lock);
    return 0;
}

int sbx_sandbox_sweep_cgroups(const char *cgroup_parent, size_t *removed)
{
    *removed = 0;
    if (!cgroup_parent || !sbx__valid_id(cgroup_parent))
        return -EINVAL;
    pthread_mutex_lock(&caps.lock);
    bool done = caps.done;
    pthread_mutex_unlock(&caps.lock);
    if (!done)
        return -EINVAL;
    sbx_cg_env env = sbx__detect_cg_env();
    return sbx_cg_sweep(&env, cgroup_parent, removed);
}

void sbx_sandbox_cgroups_done(const char *cgroup_parent)
{
    pthread_mutex_lock(&caps.lock);
    bool done = caps.done;
    pthread_mutex_unlock(&caps.lock);
    if (!done || !cgroup_parent || !sbx__valid_id(cgroup_parent))
        return;
    sbx_cg_env env = sbx__detect_cg_env();
    sbx_cg_remove_parent(&env, cgroup_parent);
}

sbx_cg_env sbx__detect_cg_env(void)
{
    pthread_mutex_lock(&caps.lock);
    sbx_cg_env e = caps.cgenv;
    pthread_mutex_unlock(&caps.lock);
    return e;
}

int sbx__runtime_start(const char *init_path, sbx_sandbox_caps *caps)
{
    int rc = sbx__svc_start();
    return rc < 0 ? rc : sbx_sandbox_caps_detect(init_path, caps);
}
