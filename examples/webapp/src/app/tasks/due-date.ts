import { AbstractControl, ValidationErrors, ValidatorFn } from '@angular/forms';

/** Today as a local calendar day, `YYYY-MM-DD`. */
export function localToday(now: Date = new Date()): string {
  const month = String(now.getMonth() + 1).padStart(2, '0');
  const day = String(now.getDate()).padStart(2, '0');
  return `${now.getFullYear()}-${month}-${day}`;
}

/**
 * A due date may be empty or any day from today on; an earlier day gives
 * `{ pastDate: { today } }`.
 */
export function notInPast(today: () => string = localToday): ValidatorFn {
  return (control: AbstractControl<string | null>): ValidationErrors | null => {
    const value = control.value;
    if (!value) {
      return null;
    }
    const now = today();
    return value < now ? { pastDate: { today: now } } : null;
  };
}
