import t from 'tap';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { JobPaths, checkJobId } from '../../src/agent/job-paths.ts';
import { throwsCode } from '../helpers/assert.ts';

void t.test('mounts are created inside the job directory', (t) => {
  const dir = t.testdir();
  const paths = new JobPaths(path.join(dir, 'work'), path.join(dir, 'state'));
  const mounts = paths.prepareMounts('job-1', [{ source: 'data/train', target: '/data', readOnly: true }]);
  t.equal(mounts[0]?.hostPath, path.join(dir, 'work', 'job-1', 'data', 'train'));
  t.equal(mounts[0]?.readOnly, true);
  t.ok(existsSync(path.join(dir, 'work', 'job-1', 'data', 'train')));
  t.end();
});

void t.test('a mount outside the job directory is refused', (t) => {
  const dir = t.testdir();
  const paths = new JobPaths(path.join(dir, 'work'), path.join(dir, 'state'));
  for (const source of ['/etc', '../other-job', 'data/../../x']) {
    throwsCode(t, () => paths.prepareMounts('job-1', [{ source, target: '/x', readOnly: false }]), 'MOUNT_OUTSIDE_JOB_DIR', undefined, source);
  }
  // A symlink planted inside the job directory does not lead out of it.
  mkdirSync(path.join(dir, 'work', 'job-1'), { recursive: true });
  symlinkSync('/etc', path.join(dir, 'work', 'job-1', 'escape'));
  throwsCode(t, () => paths.prepareMounts('job-1', [{ source: 'escape', target: '/x', readOnly: false }]), 'MOUNT_OUTSIDE_JOB_DIR', /symbolic link/);
  t.end();
});

void t.test('job ids that could escape a path are refused', (t) => {
  for (const bad of ['..', 'a/b', '', 'A', 'x..y', `${'a'.repeat(200)}`]) {
    throwsCode(t, () => checkJobId(bad), 'SPEC_INVALID', /not valid/, JSON.stringify(bad));
  }
  t.doesNotThrow(() => checkJobId('train-demo-3f2a1c'));
  t.end();
});
