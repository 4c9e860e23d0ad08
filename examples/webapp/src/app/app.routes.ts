import { Routes } from '@angular/router';

import { AboutPage } from './pages/about-page';
import { HealthPage } from './pages/health-page';
import { NotFoundPage } from './pages/not-found-page';
import { TaskFormPage } from './tasks/task-form-page';
import { TaskListPage } from './tasks/task-list-page';

export const routes: Routes = [
  { path: '', pathMatch: 'full', redirectTo: 'tasks' },
  { path: 'tasks', component: TaskListPage, title: 'Tasks' },
  { path: 'tasks/new', component: TaskFormPage, title: 'New task' },
  { path: 'tasks/:id', component: TaskFormPage, title: 'Edit task' },
  { path: 'about', component: AboutPage, title: 'About' },
  { path: 'healthz', component: HealthPage, title: 'Health' },
  { path: '**', component: NotFoundPage, title: 'Not found' },
];
