set pagination off
break malloc
break realloc
break calloc
commands 1-3
bt 12
continue
end
continue
