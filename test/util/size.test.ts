import t from 'tap';
import { formatBytes, parseSize } from '../../src/util/size.ts';

void t.test('sizes as people write them', (t) => {
  t.equal(parseSize('512Mi'), 512 * 1024 * 1024);
  t.equal(parseSize('2Gi'), 2 * 1024 ** 3);
  t.equal(parseSize('1g'), 1e9);
  t.equal(parseSize('1.5 GiB'), 1.5 * 1024 ** 3);
  t.equal(parseSize(1048576), 1048576);
  t.equal(parseSize('1048576'), 1048576);
  t.equal(parseSize('lots'), undefined);
  t.equal(parseSize('5 parsecs'), undefined);
  t.equal(parseSize(-1), undefined);
  t.equal(formatBytes(1536), '1.5 KiB');
  t.end();
});
