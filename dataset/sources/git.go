package sources

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ResolveRepo finds the git directory of "owner/name" under reposDir, trying
// in turn reposDir/owner+name/repo/.git, reposDir/owner+name/repo,
// reposDir/owner+name(.git), reposDir/owner/name(.git) and
// reposDir/name(.git) (each as a bare git directory or a work tree with
// .git).
func ResolveRepo(reposDir, repo string) (string, error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok {
		return "", fmt.Errorf("repo %q: want owner/name", repo)
	}
	var cands []string
	for _, c := range []string{
		filepath.Join(reposDir, owner+"+"+name, "repo"),
		filepath.Join(reposDir, owner+"+"+name),
		filepath.Join(reposDir, owner+"+"+name+".git"),
		filepath.Join(reposDir, owner, name),
		filepath.Join(reposDir, owner, name+".git"),
		filepath.Join(reposDir, name),
		filepath.Join(reposDir, name+".git"),
	} {
		cands = append(cands, filepath.Join(c, ".git"), c)
	}
	for _, c := range cands {
		if isGitDir(c) {
			return c, nil
		}
	}
	return "", fmt.Errorf("no local snapshot of %s under %s (looked for %s/%s+%s/repo, %s/%s/%s(.git), %s/%s(.git)): fetch or clone it first",
		repo, reposDir, reposDir, owner, name, reposDir, owner, name, reposDir, name)
}

func isGitDir(d string) bool {
	st, err := os.Stat(filepath.Join(d, "HEAD"))
	if err != nil || st.IsDir() {
		return false
	}
	st, err = os.Stat(filepath.Join(d, "objects"))
	return err == nil && st.IsDir()
}

// treeEntry is a blob of a commit's tree.
type treeEntry struct {
	path, oid string
	size      int64
}

// gitRepo reads one git directory.
type gitRepo struct {
	dir string

	mu    sync.Mutex
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	cause error
}

func (g *gitRepo) git(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir=" + g.dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("git %s (in %s): %s", strings.Join(args, " "), g.dir, msg)
	}
	return out, nil
}

// checkCommit verifies that the commit is present.
func (g *gitRepo) checkCommit(ctx context.Context, commit string) error {
	if _, err := g.git(ctx, "cat-file", "-e", commit+"^{commit}"); err != nil {
		return fmt.Errorf("commit %s is not in the local snapshot %s (fetch a newer snapshot, or clone the repository with its history): %w", commit, g.dir, err)
	}
	return nil
}

// tree lists the blobs of a commit, by path.
func (g *gitRepo) tree(ctx context.Context, commit string) (map[string]treeEntry, error) {
	out, err := g.git(ctx, "ls-tree", "-r", "-z", "--long", commit)
	if err != nil {
		return nil, err
	}
	entries := map[string]treeEntry{}
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, p, ok := bytes.Cut(rec, []byte{'\t'})
		if !ok {
			return nil, fmt.Errorf("git ls-tree: unexpected line %q", rec)
		}
		f := strings.Fields(string(meta))
		if len(f) != 4 || f[1] != "blob" {
			continue // submodules
		}
		size, _ := strconv.ParseInt(f[3], 10, 64)
		entries[string(p)] = treeEntry{path: string(p), oid: f[2], size: size}
	}
	return entries, nil
}

// blob reads one object through a long-running git cat-file --batch.
func (g *gitRepo) blob(ctx context.Context, oid string) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cause != nil {
		return nil, g.cause
	}
	if g.cmd == nil {
		cmd := exec.Command("git", "--git-dir="+g.dir, "cat-file", "--batch")
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("git cat-file --batch: %w", err)
		}
		g.cmd, g.in, g.out = cmd, in, bufio.NewReaderSize(out, 1<<20)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fail := func(err error) ([]byte, error) {
		g.cause = fmt.Errorf("git cat-file --batch in %s: %w", g.dir, err)
		return nil, g.cause
	}
	if _, err := io.WriteString(g.in, oid+"\n"); err != nil {
		return fail(err)
	}
	header, err := g.out.ReadString('\n')
	if err != nil {
		return fail(err)
	}
	f := strings.Fields(header)
	if len(f) == 2 && f[1] == "missing" {
		return nil, fmt.Errorf("object %s missing in %s", oid, g.dir)
	}
	if len(f) != 3 {
		return fail(fmt.Errorf("unexpected header %q", header))
	}
	size, err := strconv.Atoi(f[2])
	if err != nil {
		return fail(fmt.Errorf("unexpected header %q", header))
	}
	data := make([]byte, size+1)
	if _, err := io.ReadFull(g.out, data); err != nil {
		return fail(err)
	}
	data = data[:size]
	if bytes.HasPrefix(data, []byte("version https://git-lfs.github.com/spec/")) {
		return nil, errors.New("the file is a Git LFS pointer (its content is not in the git snapshot)")
	}
	return data, nil
}

func (g *gitRepo) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd != nil {
		g.in.Close()
		_ = g.cmd.Wait()
		g.cmd = nil
	}
}
