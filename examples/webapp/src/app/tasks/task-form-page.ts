import { Component, OnInit, inject, input, signal } from '@angular/core';
import {
  AbstractControl,
  FormControl,
  FormGroup,
  ReactiveFormsModule,
  ValidationErrors,
  Validators,
} from '@angular/forms';
import { Router, RouterLink } from '@angular/router';

import { notInPast } from './due-date';
import { TASK_STATUSES, TaskDraft, TaskStatus } from './task';
import { TaskStore } from './task-store';

export const TITLE_MIN = 3;
export const TITLE_MAX = 80;

/** Title rules, on the trimmed text: required, at least 3 and at most 80 characters. */
export function titleRules(control: AbstractControl<string>): ValidationErrors | null {
  const title = (control.value ?? '').trim();
  if (title.length === 0) {
    return { required: true };
  }
  if (title.length < TITLE_MIN) {
    return { minlength: { requiredLength: TITLE_MIN, actualLength: title.length } };
  }
  if (title.length > TITLE_MAX) {
    return { maxlength: { requiredLength: TITLE_MAX, actualLength: title.length } };
  }
  return null;
}

export function taskForm(): FormGroup<{
  title: FormControl<string>;
  description: FormControl<string>;
  dueDate: FormControl<string>;
  status: FormControl<TaskStatus>;
}> {
  return new FormGroup({
    title: new FormControl('', { nonNullable: true, validators: [titleRules] }),
    description: new FormControl('', { nonNullable: true, validators: [Validators.maxLength(500)] }),
    dueDate: new FormControl('', { nonNullable: true, validators: [notInPast()] }),
    status: new FormControl<TaskStatus>('todo', { nonNullable: true }),
  });
}

/** Create (`/tasks/new`) or edit (`/tasks/:id`) a task. */
@Component({
  selector: 'app-task-form-page',
  imports: [ReactiveFormsModule, RouterLink],
  template: `
    @if (missing()) {
      <h1 data-testid="page-title">Task not found</h1>
      <p data-testid="task-not-found">There is no task #{{ id() }}. <a routerLink="/tasks">Back to the tasks</a>.</p>
    } @else {
      <h1 data-testid="page-title">{{ taskId() === null ? 'New task' : 'Edit task #' + taskId() }}</h1>
      <form [formGroup]="form" (ngSubmit)="save()" novalidate data-testid="task-form">
        <label for="title">Title</label>
        <input id="title" formControlName="title" data-testid="title-input" autocomplete="off" />
        @if (show('title'); as errors) {
          <p class="error" data-testid="title-error">
            @if (errors['required']) { Title is required. }
            @else if (errors['minlength']) { Title must be at least {{ titleMin }} characters. }
            @else if (errors['maxlength']) { Title must be at most {{ titleMax }} characters. }
          </p>
        }

        <label for="description">Description</label>
        <textarea id="description" formControlName="description" rows="3" data-testid="description-input"></textarea>
        @if (show('description')) {
          <p class="error" data-testid="description-error">Description must be at most 500 characters.</p>
        }

        <label for="dueDate">Due date</label>
        <input id="dueDate" type="date" formControlName="dueDate" data-testid="due-input" />
        @if (show('dueDate')) {
          <p class="error" data-testid="due-error">Due date cannot be in the past.</p>
        }

        <label for="status">Status</label>
        <select id="status" formControlName="status" data-testid="status-select">
          @for (status of statuses; track status) {
            <option [value]="status">{{ status }}</option>
          }
        </select>

        @if (submitted() && form.invalid) {
          <p class="error" role="alert" data-testid="form-error">Fix the errors above to save the task.</p>
        }
        <div class="actions">
          <button type="submit" data-testid="save-button">{{ taskId() === null ? 'Create task' : 'Save changes' }}</button>
          <a routerLink="/tasks" data-testid="cancel-link">Cancel</a>
          @if (taskId() !== null) {
            <button type="button" class="danger" data-testid="delete-button" (click)="remove()">Delete task</button>
          }
        </div>
      </form>
    }
  `,
})
export class TaskFormPage implements OnInit {
  /** Route parameter `:id` (absent on `/tasks/new`). */
  readonly id = input<string>();

  private readonly store = inject(TaskStore);
  private readonly router = inject(Router);

  protected readonly form = taskForm();
  protected readonly statuses = TASK_STATUSES;
  protected readonly titleMin = TITLE_MIN;
  protected readonly titleMax = TITLE_MAX;
  protected readonly submitted = signal(false);
  protected readonly taskId = signal<number | null>(null);
  protected readonly missing = signal(false);

  ngOnInit(): void {
    const raw = this.id();
    if (raw === undefined) {
      return;
    }
    const id = Number(raw);
    const task = Number.isInteger(id) ? this.store.get(id) : undefined;
    if (!task) {
      this.missing.set(true);
      return;
    }
    this.taskId.set(task.id);
    this.form.setValue({
      title: task.title,
      description: task.description,
      dueDate: task.dueDate,
      status: task.status,
    });
  }

  /** The control's errors once the user has left it or tried to save, else null. */
  protected show(name: keyof TaskDraft): ValidationErrors | null {
    const control = this.form.controls[name];
    return control.invalid && (control.touched || this.submitted()) ? control.errors : null;
  }

  protected save(): void {
    this.submitted.set(true);
    this.form.markAllAsTouched();
    if (this.form.invalid) {
      return;
    }
    const draft: TaskDraft = this.form.getRawValue();
    const id = this.taskId();
    if (id === null) {
      const task = this.store.create(draft);
      void this.router.navigate(['/tasks'], { state: { flash: `Created task #${task.id} “${task.title}”.` } });
    } else {
      const task = this.store.update(id, draft);
      void this.router.navigate(['/tasks'], {
        state: { flash: task ? `Saved task #${id} “${task.title}”.` : `Task #${id} no longer exists.` },
      });
    }
  }

  protected remove(): void {
    const id = this.taskId();
    if (id !== null && this.store.remove(id)) {
      void this.router.navigate(['/tasks'], { state: { flash: `Deleted task #${id}.` } });
    }
  }
}
