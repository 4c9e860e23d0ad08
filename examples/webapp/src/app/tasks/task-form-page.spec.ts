import { TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';

import { TaskFormPage, taskForm } from './task-form-page';
import { TaskStore } from './task-store';

describe('task form rules', () => {
  it('requires a title of 3 to 80 characters, ignoring surrounding spaces', () => {
    const form = taskForm();
    const title = form.controls.title;
    title.setValue('   ');
    expect(title.errors).toEqual({ required: true });
    title.setValue(' ab ');
    expect(title.errors?.['minlength']).toBeTruthy();
    title.setValue('x'.repeat(81));
    expect(title.errors?.['maxlength']).toBeTruthy();
    title.setValue('abc');
    expect(title.errors).toBeNull();
  });

  it('rejects a due date in the past', () => {
    const form = taskForm();
    form.controls.title.setValue('Valid title');
    form.controls.dueDate.setValue('2000-01-01');
    expect(form.valid).toBe(false);
    expect(form.controls.dueDate.errors?.['pastDate']).toBeTruthy();
  });
});

describe('TaskFormPage', () => {
  beforeEach(async () => {
    localStorage.clear();
    await TestBed.configureTestingModule({
      imports: [TaskFormPage],
      providers: [provideRouter([])],
    }).compileComponents();
  });

  it('shows the validation messages instead of saving an empty task', async () => {
    const fixture = TestBed.createComponent(TaskFormPage);
    await fixture.whenStable();
    const page = fixture.nativeElement as HTMLElement;
    (page.querySelector('[data-testid="save-button"]') as HTMLButtonElement).click();
    await fixture.whenStable();
    expect(page.querySelector('[data-testid="title-error"]')?.textContent).toContain('Title is required.');
    expect(page.querySelector('[data-testid="form-error"]')).not.toBeNull();
    expect(TestBed.inject(TaskStore).count()).toBe(3);
  });

  it('loads the task named by the route for editing', async () => {
    const fixture = TestBed.createComponent(TaskFormPage);
    fixture.componentRef.setInput('id', '2');
    await fixture.whenStable();
    const page = fixture.nativeElement as HTMLElement;
    expect(page.querySelector('[data-testid="page-title"]')?.textContent).toContain('Edit task #2');
    const title = page.querySelector('[data-testid="title-input"]') as HTMLInputElement;
    expect(title.value).toBe('Review the pipeline dashboard');
  });

  it('says so when the task does not exist', async () => {
    const fixture = TestBed.createComponent(TaskFormPage);
    fixture.componentRef.setInput('id', '42');
    await fixture.whenStable();
    const page = fixture.nativeElement as HTMLElement;
    expect(page.querySelector('[data-testid="task-not-found"]')?.textContent).toContain('no task #42');
  });
});
