"""open tasks in id order: the inbox reads its page off this index instead of sorting every open task

Revision ID: 0004_inbox_index
Revises: 0003_sales
Create Date: 2026-11-25 05:45:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0004_inbox_index'
down_revision = '0003_sales'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('human_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_open_id', ['status', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('human_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_open_id')
