import { Location } from '@angular/common';
import { Component, computed, inject, signal } from '@angular/core';
import { RouterLink } from '@angular/router';

import { filterTasks } from './task-filter';
import { TaskStore } from './task-store';

@Component({
  selector: 'app-task-list-page',
  imports: [RouterLink],
  template: `
    <h1 data-testid="page-title">Tasks</h1>
    @if (flash()) {
      <p class="flash" role="status" data-testid="flash">{{ flash() }}</p>
    }
    <div class="toolbar">
      <label>
        Filter
        <input type="search" placeholder="Type to filter by title or description"
               data-testid="filter-input" [value]="query()"
               (input)="query.set($any($event.target).value)" />
      </label>
      <a routerLink="/tasks/new" class="button" data-testid="new-task">New task</a>
    </div>
    <p data-testid="task-count">Showing {{ visible().length }} of {{ store.count() }} tasks</p>
    @if (visible().length > 0) {
      <table>
        <thead>
          <tr><th>#</th><th>Title</th><th>Status</th><th>Due</th><th></th></tr>
        </thead>
        <tbody>
          @for (task of visible(); track task.id) {
            <tr data-testid="task-row" [attr.data-task-id]="task.id">
              <td>{{ task.id }}</td>
              <td><a [routerLink]="['/tasks', task.id]" data-testid="task-link">{{ task.title }}</a></td>
              <td><span class="status {{ task.status }}" data-testid="task-status">{{ task.status }}</span></td>
              <td data-testid="task-due">{{ task.dueDate || '—' }}</td>
              <td><button type="button" class="danger" data-testid="task-delete"
                          (click)="remove(task.id, task.title)">Delete</button></td>
            </tr>
          }
        </tbody>
      </table>
    } @else if (store.count() === 0) {
      <p data-testid="no-tasks">The board is empty.</p>
    } @else {
      <p data-testid="no-match">No task matches “{{ query() }}”.</p>
    }
    <p><button type="button" data-testid="reset-board" (click)="reset()">Restore the sample tasks</button></p>
  `,
})
export class TaskListPage {
  protected readonly store = inject(TaskStore);
  protected readonly query = signal('');
  protected readonly visible = computed(() => filterTasks(this.store.tasks(), this.query()));
  protected readonly flash = signal<string>(readFlash(inject(Location).getState()));

  protected remove(id: number, title: string): void {
    if (this.store.remove(id)) {
      this.flash.set(`Deleted task #${id} “${title}”.`);
    }
  }

  protected reset(): void {
    this.store.reset();
    this.query.set('');
    this.flash.set('Restored the sample tasks.');
  }
}

function readFlash(state: unknown): string {
  if (typeof state === 'object' && state !== null && 'flash' in state) {
    return String((state as { flash: unknown }).flash);
  }
  return '';
}
