import { FormControl } from '@angular/forms';

import { localToday, notInPast } from './due-date';

describe('notInPast', () => {
  const validator = notInPast(() => '2030-06-15');

  it('accepts an empty date, today and later days', () => {
    expect(validator(new FormControl(''))).toBeNull();
    expect(validator(new FormControl('2030-06-15'))).toBeNull();
    expect(validator(new FormControl('2031-01-01'))).toBeNull();
  });

  it('rejects an earlier day and says which day is today', () => {
    expect(validator(new FormControl('2030-06-14'))).toEqual({ pastDate: { today: '2030-06-15' } });
  });

  it('formats today as a zero-padded local day', () => {
    expect(localToday(new Date(2031, 0, 5, 23, 59))).toBe('2031-01-05');
  });
});
